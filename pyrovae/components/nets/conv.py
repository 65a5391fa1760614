"""Convolutional encoder and decoder for images of shape (C, H, W).

Each encoder layer is a 3x3 convolution with stride 2 (H -> ceil(H/2)); the decoder mirrors it
with 3x3 transposed convolutions (h -> 2h) and crops the result to (H, W), so any image size
works (28x28: 28 -> 14 -> 7 and back; 8x8: 8 -> 4 -> 2 and back).
"""

from __future__ import annotations

import math

from torch import nn

from pyrovae.components.nets.mlp import activation, gaussian_head


def _downsampled(size: int, layers: int) -> int:
    for _ in range(layers):
        size = (size + 1) // 2
    return size


def conv_stack(image_shape, channels, act: str) -> tuple[nn.Sequential, int]:
    """3x3 stride-2 convolutions, one per entry of ``channels``, each followed by ``act``, on
    images (C, H, W): the layers and the size of their flattened output."""
    c, h, w = image_shape
    layers: list[nn.Module] = []
    for c_out in channels:
        layers += [nn.Conv2d(c, c_out, 3, stride=2, padding=1), activation(act)]
        c = c_out
    n = len(channels)
    return nn.Sequential(*layers), c * _downsampled(h, n) * _downsampled(w, n)


class ConvEncoder(nn.Module):
    """x [B, C*H*W] -> convs -> flatten -> linear -> (loc, scale), each [B, L]; or, with
    ``outputs`` = P given (a posterior family's own parameterisation), the raw linear [B, P]."""

    def __init__(self, image_shape, channels, latent_dim: int, act: str = "relu",
                 outputs: int | None = None):
        super().__init__()
        self.image_shape = tuple(image_shape)
        self.raw = outputs is not None
        self.convs, flat = conv_stack(self.image_shape, channels, act)
        self.head = nn.Linear(flat, outputs if self.raw else 2 * latent_dim)

    def forward(self, x):
        h = self.head(self.convs(x.reshape(-1, *self.image_shape)).flatten(1))
        return h if self.raw else gaussian_head(h)


class ConvDecoder(nn.Module):
    """z [..., L] -> linear -> transposed convs -> crop to (H, W) -> out [..., K*C*H*W]."""

    def __init__(self, image_shape, channels, latent_dim: int, act: str = "relu",
                 params_per_pixel: int = 1):
        super().__init__()
        self.image_shape = tuple(image_shape)
        self.params_per_pixel = params_per_pixel
        c, h, w = self.image_shape
        rev = list(reversed(tuple(channels)))
        self.start = (rev[0], _downsampled(h, len(rev)), _downsampled(w, len(rev)))
        self.fc = nn.Sequential(nn.Linear(latent_dim, math.prod(self.start)), activation(act))
        layers: list[nn.Module] = []
        for i, c_in in enumerate(rev):
            last = i == len(rev) - 1
            c_out = params_per_pixel * c if last else rev[i + 1]
            layers.append(nn.ConvTranspose2d(c_in, c_out, 3, stride=2, padding=1,
                                             output_padding=1))
            if not last:
                layers.append(activation(act))
        self.deconvs = nn.Sequential(*layers)

    def forward(self, z):
        batch = z.shape[:-1]
        h = self.fc(z.reshape(-1, z.shape[-1])).reshape(-1, *self.start)
        _, height, width = self.image_shape
        out = self.deconvs(h)[..., :height, :width]
        return out.reshape(*batch, -1)


def conv_decoder_floats(image_shape, channels, params_per_pixel: int = 1) -> int:
    """Numbers one point (one particle) produces through :class:`ConvDecoder`: each feature
    map before and after its activation (c_n h_n w_n from the linear layer, then each
    transposed convolution's, h and w doubling) and the uncropped output K C (2h)(2w)."""
    c, height, width = image_shape
    rev = tuple(channels)[::-1]
    h, w = _downsampled(height, len(rev)), _downsampled(width, len(rev))
    maps = [rev[0] * h * w]
    for c_out in rev[1:]:
        h, w = 2 * h, 2 * w
        maps.append(c_out * h * w)
    return 2 * sum(maps) + params_per_pixel * c * (2 * h) * (2 * w)
