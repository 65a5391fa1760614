"""Encoder and decoder networks.

    encoder: x [B, D]      -> (loc [B, L], scale [B, L])   the amortized q(z|x) = N(loc, scale^2)
             x [B, D]      -> h [B, P]   with ``outputs`` = P: a posterior family's parameters
    decoder: z [..., B, L] -> out [..., B, K * D]          parameters of p(x|z), K per pixel

Architectures are registered in :data:`pyrovae.runtime.registry.NETWORKS` (``model.network``): each
entry is an object with ``encoder(config, input_shape, outputs=None)`` and
``decoder(config, input_shape, params_per_pixel)``. ``make_encoder``/``make_decoder`` build
the one a config names; ``outputs`` is passed only when the guide's family
(``pyrovae.components.posteriors``) wants a raw output instead of the Gaussian head.
"""

from pyrovae.runtime.errors import ConfigError
from pyrovae.runtime.registry import NETWORKS
from pyrovae.components.nets.conv import ConvDecoder, ConvEncoder
from pyrovae.components.nets.mlp import MLPDecoder, MLPEncoder, activation


def _image_shape(shape):
    if len(shape) != 3:
        raise ConfigError(f"network = \"conv\" needs image data shaped (channels, height, width), "
                          f"but the data are flat vectors of shape {tuple(shape)}; "
                          f"use network = \"mlp\" or load images")
    return tuple(shape)


@NETWORKS.register("mlp")
class MLPNetworks:
    """Fully connected: ``model.hidden`` layers (the decoder mirrors them)."""

    @staticmethod
    def encoder(config, input_shape, outputs=None):
        return MLPEncoder(input_shape, config.hidden, config.latent_dim, config.activation,
                          outputs)

    @staticmethod
    def decoder(config, input_shape, params_per_pixel=1):
        return MLPDecoder(input_shape, config.hidden, config.latent_dim, config.activation,
                          params_per_pixel)


@NETWORKS.register("conv")
class ConvNetworks:
    """Stride-2 convolutions with ``model.channels`` (images only); transposed ones back."""

    @staticmethod
    def encoder(config, input_shape, outputs=None):
        return ConvEncoder(_image_shape(input_shape), config.channels, config.latent_dim,
                           config.activation, outputs)

    @staticmethod
    def decoder(config, input_shape, params_per_pixel=1):
        return ConvDecoder(_image_shape(input_shape), config.channels, config.latent_dim,
                           config.activation, params_per_pixel)


def make_encoder(config, input_shape, outputs: int | None = None):
    """The encoder for ``config`` (a VAEConfig) on data of shape ``input_shape``: the Gaussian
    head (loc, scale), or with ``outputs`` = P a raw [B, P] output."""
    networks = NETWORKS.get(config.network)
    if outputs is None:  # (a registered architecture need not know about outputs)
        return networks.encoder(config, input_shape)
    return networks.encoder(config, input_shape, outputs=outputs)


def make_decoder(config, input_shape, params_per_pixel=1):
    """The decoder mirroring :func:`make_encoder`, with ``params_per_pixel`` outputs per pixel."""
    return NETWORKS.get(config.network).decoder(config, input_shape, params_per_pixel)


__all__ = ["MLPEncoder", "MLPDecoder", "ConvEncoder", "ConvDecoder", "make_encoder",
           "make_decoder", "activation"]
