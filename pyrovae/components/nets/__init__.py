"""Encoder and decoder networks.

    encoder: x [B, D]      -> (loc [B, L], scale [B, L])   the amortized q(z|x) = N(loc, scale^2)
             x [B, D]      -> h [B, P]   with ``outputs`` = P: a posterior family's parameters
    decoder: z [..., B, L] -> out [..., B, K * D]          parameters of p(x|z), K per pixel

Architectures are registered in :data:`pyrovae.runtime.registry.NETWORKS` (``model.network``): each
entry is an object with ``encoder(config, input_shape, outputs=None)`` and
``decoder(config, input_shape, params_per_pixel)``. ``make_encoder``/``make_decoder`` build
the one a config names; ``outputs`` is passed only when the guide's family
(``pyrovae.components.posteriors``) wants a raw output instead of the Gaussian head.

For the memory checks an entry may also give ``activation_floats(config, input_shape,
params_per_pixel)`` (numbers per point through the decoder) and ``size_fields`` (the config
fields that size it); its parameters are counted by building it on the meta device.
"""

import math

from pyrovae.runtime.errors import ConfigError
from pyrovae.runtime.registry import NETWORKS
from pyrovae.runtime.sizes import meta_count
from pyrovae.components.nets.conv import ConvDecoder, ConvEncoder, conv_decoder_floats
from pyrovae.components.nets.mlp import MLPDecoder, MLPEncoder, activation, mlp_decoder_floats


def _image_shape(shape):
    if len(shape) != 3:
        raise ConfigError(f"network = \"conv\" needs image data shaped (channels, height, width), "
                          f"but the data are flat vectors of shape {tuple(shape)}; "
                          f"use network = \"mlp\" or load images")
    return tuple(shape)


@NETWORKS.register("mlp")
class MLPNetworks:
    """Fully connected: ``model.hidden`` layers (the decoder mirrors them)."""

    size_fields = ("hidden",)  # the config's sizes that set the networks' (memory messages)

    @staticmethod
    def encoder(config, input_shape, outputs=None):
        return MLPEncoder(input_shape, config.hidden, config.latent_dim, config.activation,
                          outputs)

    @staticmethod
    def decoder(config, input_shape, params_per_pixel=1):
        return MLPDecoder(input_shape, config.hidden, config.latent_dim, config.activation,
                          params_per_pixel)

    @staticmethod
    def activation_floats(config, input_shape, params_per_pixel=1):
        return mlp_decoder_floats(config.hidden, math.prod(input_shape), params_per_pixel)


@NETWORKS.register("conv")
class ConvNetworks:
    """Stride-2 convolutions with ``model.channels`` (images only); transposed ones back."""

    size_fields = ("channels",)

    @staticmethod
    def encoder(config, input_shape, outputs=None):
        return ConvEncoder(_image_shape(input_shape), config.channels, config.latent_dim,
                           config.activation, outputs)

    @staticmethod
    def decoder(config, input_shape, params_per_pixel=1):
        return ConvDecoder(_image_shape(input_shape), config.channels, config.latent_dim,
                           config.activation, params_per_pixel)

    @staticmethod
    def activation_floats(config, input_shape, params_per_pixel=1):
        return conv_decoder_floats(_image_shape(input_shape), config.channels, params_per_pixel)


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


def network_parameters(config, input_shape, outputs: int | None = None, params_per_pixel=1,
                       buffers: bool = False) -> int:
    """Parameters (and buffers) of :func:`make_encoder` + :func:`make_decoder`, built on the
    meta device (nothing allocated): exact for any registered architecture."""
    return (meta_count(lambda: make_encoder(config, input_shape, outputs), buffers)
            + meta_count(lambda: make_decoder(config, input_shape, params_per_pixel), buffers))


def activation_floats(config, input_shape, params_per_pixel=1) -> int | None:
    """Numbers one point produces through the decoder (hidden layers before and after their
    activation, and the K D outputs), as the architecture says (its ``activation_floats``);
    None for one that does not say."""
    floats = getattr(NETWORKS.get(config.network), "activation_floats", None)
    return None if floats is None else int(floats(config, input_shape, params_per_pixel))


__all__ = ["MLPEncoder", "MLPDecoder", "ConvEncoder", "ConvDecoder", "make_encoder",
           "make_decoder", "activation", "network_parameters", "activation_floats"]
