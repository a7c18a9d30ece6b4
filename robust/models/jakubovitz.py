"""The MNIST network of Jakubovitz & Giryes 2018 (arXiv 1803.08680, §4).

It is the TensorFlow "Deep MNIST" tutorial CNN used by the official code: conv 5×5×32 (SAME)
+ ReLU → max-pool 2 → conv 5×5×64 + ReLU → max-pool 2 → FC 1024 + ReLU → dropout (keep 0.5)
→ FC K. Initialisation as in the tutorial: truncated normal (std 0.1) weights, biases 0.1.
Inputs are MNIST pixels in [0, 1] without further normalisation, as in the tutorial.

``width`` < 1 gives the narrow smoke-profile variant (same layers, fewer channels).
"""

from __future__ import annotations

import torch
from torch import nn

from robust.models import ARCHS
from robust.models.layers import Normalize, scaled


class JakubovitzMnistNet(nn.Module):
    def __init__(self, in_shape: tuple[int, int, int], num_classes: int, width: float = 1.0):
        super().__init__()
        channels, height, width_px = in_shape
        c1, c2, hidden = scaled(32, width), scaled(64, width), scaled(1024, width)
        self.normalize = Normalize([0.0] * channels, [1.0] * channels)
        self.conv1 = nn.Conv2d(channels, c1, 5, padding=2)
        self.conv2 = nn.Conv2d(c1, c2, 5, padding=2)
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(c2 * (height // 4) * (width_px // 4), hidden)
        self.dropout = nn.Dropout(0.5)
        self.fc2 = nn.Linear(hidden, num_classes)
        for layer in (self.conv1, self.conv2, self.fc1, self.fc2):
            nn.init.trunc_normal_(layer.weight, std=0.1, a=-0.2, b=0.2)
            nn.init.constant_(layer.bias, 0.1)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The representation the last layer reads (after dropout): E of representation defenses (AFD)."""
        x = self.normalize(x)
        x = self.pool(torch.relu(self.conv1(x)))
        x = self.pool(torch.relu(self.conv2(x)))
        return self.dropout(torch.relu(self.fc1(x.flatten(1))))

    @property
    def head(self) -> nn.Linear:
        # a property, not a second registration of fc2: checkpoints keep their keys
        return self.fc2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.embed(x))

    def l2_weights(self) -> list[torch.Tensor]:
        """Weights the official code puts under its 1e-3·l2_loss penalty (all but the last layer)."""
        return [self.conv1.weight, self.conv2.weight, self.fc1.weight]


@ARCHS.register("jakubovitz-mnist")
def jakubovitz_mnist(*, in_shape, num_classes, width):
    return JakubovitzMnistNet(in_shape, num_classes, width)
