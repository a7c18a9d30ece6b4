"""The networks of Jakubovitz & Giryes 2018 (arXiv 1803.08680, §4 and Appendix E).

MNIST (``jakubovitz-mnist``): the TensorFlow "Deep MNIST" tutorial CNN used by the official code: conv 5×5×32 (SAME)
+ ReLU → max-pool 2 → conv 5×5×64 + ReLU → max-pool 2 → FC 1024 + ReLU → dropout (keep 0.5)
→ FC K. Initialisation as in the tutorial: truncated normal (std 0.1) weights, biases 0.1.
Inputs are MNIST pixels in [0, 1] without further normalisation, as in the tutorial.

CIFAR-10 and CIFAR-100 (``jakubovitz-cifar``, the same net for both): "four concatenated sets, where
each set consists of two convolutional layers followed by a max pooling layer followed by dropout with a
0.75 keep probability. After these four sets, two fully connected layers are used" (§4), trained with
RMSProp. The text gives no filter size, channel count or hidden width. The description is Keras'
``cifar10_cnn`` example (conv-conv-pool-dropout 0.25 sets, then a dense layer and the classifier,
RMSProp) grown to four sets; chosen from that example: 3×3 filters, ReLU, a 512-unit hidden layer,
Glorot-uniform weights with zero biases, pixels in [0, 1]; channels doubling per set from its 32 and
64 (32, 64, 128, 256); SAME padding throughout, so that four 2× pools leave a 2×2 map of a 32×32 image.

``width`` < 1 gives the narrow smoke- and cpu-profile variants (same layers, fewer channels).
"""

from __future__ import annotations

import torch
from torch import nn

from robust.models import ARCHS
from robust.models.layers import Normalize, scaled


class _EmbeddingThenHead(nn.Module):
    """A net whose last layer ``fc2`` reads ``embed(x)``: the split representation defenses (AFD) and the
    hidden-layer Jacobian penalty use."""

    @property
    def head(self) -> nn.Linear:
        # a property, not a second registration of fc2: checkpoints keep their keys
        return self.fc2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.embed(x))


class JakubovitzMnistNet(_EmbeddingThenHead):
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

    def l2_weights(self) -> list[torch.Tensor]:
        """Weights the official code puts under its 1e-3·l2_loss penalty (all but the last layer)."""
        return [self.conv1.weight, self.conv2.weight, self.fc1.weight]


@ARCHS.register("jakubovitz-mnist")
def jakubovitz_mnist(*, in_shape, num_classes, width):
    return JakubovitzMnistNet(in_shape, num_classes, width)


CIFAR_CHANNELS = (32, 64, 128, 256)
CIFAR_HIDDEN = 512
CIFAR_DROP = 0.25  # keep probability 0.75


class JakubovitzCifarNet(_EmbeddingThenHead):
    def __init__(self, in_shape: tuple[int, int, int], num_classes: int, width: float = 1.0):
        super().__init__()
        channels, height, width_px = in_shape
        side_h, side_w = height // 2 ** len(CIFAR_CHANNELS), width_px // 2 ** len(CIFAR_CHANNELS)
        if side_h < 1 or side_w < 1:
            raise ValueError(f"jakubovitz-cifar needs inputs of at least 16×16 pixels, got {height}×{width_px}")
        sets, previous = [], channels
        for base in CIFAR_CHANNELS:
            c = scaled(base, width)
            sets += [nn.Conv2d(previous, c, 3, padding=1), nn.ReLU(), nn.Conv2d(c, c, 3, padding=1), nn.ReLU(),
                     nn.MaxPool2d(2), nn.Dropout(CIFAR_DROP)]
            previous = c
        self.features = nn.Sequential(*sets)
        self.fc1 = nn.Linear(previous * side_h * side_w, scaled(CIFAR_HIDDEN, width))
        self.fc2 = nn.Linear(self.fc1.out_features, num_classes)
        for layer in self.modules():
            if isinstance(layer, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(layer.weight)
                nn.init.zeros_(layer.bias)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.fc1(self.features(x).flatten(1)))

    def l2_weights(self) -> list[torch.Tensor]:
        """Every convolution and dense weight but the classifier's, as the MNIST net's (the text names no decay)."""
        return [m.weight for m in self.modules() if isinstance(m, (nn.Conv2d, nn.Linear)) and m is not self.fc2]


@ARCHS.register("jakubovitz-cifar")
def jakubovitz_cifar(*, in_shape, num_classes, width):
    return JakubovitzCifarNet(in_shape, num_classes, width)
