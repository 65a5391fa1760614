"""Networks of the M2 model that take a class label beside their input.

    ConditionalMLP: (a [..., B, A], y [...] int) -> MLP([a, onehot(y)]) [..., B, out]

The first layer of an MLP on the concatenation [a, onehot(y)] is W_a a + W_y onehot(y) + b;
W_y onehot(y) is row y of a table E [C, H1], so the layer is computed as ``Linear(a) +
Embedding(y)`` without building the concatenation. Under parallel enumeration y has shape
[C, 1] and a has shape [B, A] (encoder) or [C, B, L] (decoder): the sum broadcasts to
[C, B, H1], and the x-part of the encoder's first layer is computed once, not C times.
"""

from __future__ import annotations

from torch import nn

from pyrovae.components.nets.conv import conv_stack
from pyrovae.components.nets.mlp import activation, mlp


class ConditionalMLP(nn.Module):
    """MLP([in_dim + C, *hidden, out_dim]) on (a, onehot(y)), with ``act`` between layers."""

    def __init__(self, in_dim: int, num_classes: int, hidden, out_dim: int, act: str):
        super().__init__()
        sizes = [*hidden, out_dim]
        self.first = nn.Linear(in_dim, sizes[0])
        self.label = nn.Embedding(num_classes, sizes[0])
        nn.init.normal_(self.label.weight, std=in_dim ** -0.5)  # like one more Linear input
        self.rest = (nn.Sequential(activation(act), mlp(sizes, act)) if len(sizes) > 1
                     else nn.Identity())

    def forward(self, a, y):
        return self.rest(self.first(a) + self.label(y))


class ConvClassifier(nn.Module):
    """x [B, C*H*W] -> stride-2 3x3 convolutions (``channels``) -> flatten -> MLP(hidden)
    -> logits [B, num_classes]."""

    def __init__(self, image_shape, channels, hidden, num_classes: int, act: str):
        super().__init__()
        self.image_shape = tuple(image_shape)
        self.convs, flat = conv_stack(self.image_shape, channels, act)
        self.head = mlp([flat, *hidden, num_classes], act)

    def forward(self, x):
        return self.head(self.convs(x.reshape(-1, *self.image_shape)).flatten(1))
