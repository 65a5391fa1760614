"""Encoder and decoder networks.

    encoder: x [B, D]      -> (loc [B, L], scale [B, L])   the amortized q(z|x) = N(loc, scale^2)
    decoder: z [..., B, L] -> out [..., B, K * D]          parameters of p(x|z), K per pixel

``make_encoder``/``make_decoder`` build the architecture named by ``VAEConfig.network``.
"""

from .conv import ConvDecoder, ConvEncoder
from .mlp import MLPDecoder, MLPEncoder, activation
from ..errors import ConfigError


def _image_shape(shape):
    if len(shape) != 3:
        raise ConfigError(f"network = \"conv\" needs image data shaped (channels, height, width), "
                          f"but the data are flat vectors of shape {tuple(shape)}; "
                          f"use network = \"mlp\" or load images")
    return tuple(shape)


def make_encoder(config, input_shape):
    """The encoder for ``config`` (a VAEConfig) on data of shape ``input_shape``."""
    if config.network == "conv":
        return ConvEncoder(_image_shape(input_shape), config.channels, config.latent_dim,
                           config.activation)
    return MLPEncoder(input_shape, config.hidden, config.latent_dim, config.activation)


def make_decoder(config, input_shape, params_per_pixel=1):
    """The decoder mirroring :func:`make_encoder`, with ``params_per_pixel`` outputs per pixel."""
    if config.network == "conv":
        return ConvDecoder(_image_shape(input_shape), config.channels, config.latent_dim,
                           config.activation, params_per_pixel)
    return MLPDecoder(input_shape, config.hidden, config.latent_dim, config.activation,
                      params_per_pixel)


__all__ = ["MLPEncoder", "MLPDecoder", "ConvEncoder", "ConvDecoder", "make_encoder",
           "make_decoder", "activation"]
