"""Distortion measures for images with values in [0, 1] (no library: none is installed).

PSNR over a set of N images x, x_hat [N, D] (one MSE over all pixels, then the log)::

    MSE = mean_{n,d} (x_nd - x_hat_nd)^2,     PSNR = 10 log10(1 / MSE)  dB

SSIM (Wang et al. 2004) of one [H, W] pair, with a w x w Gaussian window g (sigma 1.5,
w = min(7, H, W), "valid": the window never leaves the image), local statistics

    mu_x = g * x,  sigma_x^2 = g * x^2 - mu_x^2,  sigma_xy = g * (x y) - mu_x mu_y
    SSIM = mean over window positions of
           (2 mu_x mu_y + C1)(2 sigma_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(sigma_x^2 + sigma_y^2 + C2))

with C1 = (0.01)^2, C2 = (0.03)^2 (data range 1); the set's SSIM is the mean over images. On
8 x 8 digits the 7 x 7 window has 2 x 2 positions, so SSIM there is a coarse, mostly global
structure score.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

C1 = 0.01 ** 2
C2 = 0.03 ** 2
SIGMA = 1.5


def psnr(x, x_hat) -> float:
    """10 log10(1 / MSE) in dB over all pixels of x, x_hat [N, ...] (inf when equal)."""
    x = torch.as_tensor(x, dtype=torch.float64)
    x_hat = torch.as_tensor(x_hat, dtype=torch.float64).reshape(x.shape)
    mse = float(((x - x_hat) ** 2).mean())
    return math.inf if mse == 0 else 10.0 * math.log10(1.0 / mse)


def gaussian_window(size: int, sigma: float = SIGMA) -> torch.Tensor:
    """The normalised size x size window [1, 1, size, size] (float64)."""
    t = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-t ** 2 / (2 * sigma ** 2))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]


def ssim(x, x_hat, shape: tuple[int, int]) -> float:
    """Mean SSIM over N images: x, x_hat [N, H*W] (or [N, H, W]) -> a number in [-1, 1]."""
    h, w = shape
    a = torch.as_tensor(x, dtype=torch.float64).reshape(-1, 1, h, w)
    b = torch.as_tensor(x_hat, dtype=torch.float64).reshape(-1, 1, h, w)
    g = gaussian_window(min(7, h, w))

    def blur(t):
        return F.conv2d(t, g)

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a ** 2
    var_b = blur(b * b) - mu_b ** 2
    cov = blur(a * b) - mu_a * mu_b
    num = (2 * mu_a * mu_b + C1) * (2 * cov + C2)
    den = (mu_a ** 2 + mu_b ** 2 + C1) * (var_a + var_b + C2)
    return float((num / den).mean())
