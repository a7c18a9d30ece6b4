"""The nine-hidden-layer CNN of Roth et al. 2018 (SGR, arXiv 1805.08736, §4.1 and App. 7.4).

"Identical to those used in" Carlini & Wagner 2017 and Papernot et al. 2016 (distillation):
conv → conv → max-pool → conv → conv → max-pool → dense → dense → dense (softmax in the loss),
each convolution followed by ReLU. Widths params[0..5] as in Carlini & Wagner's
``train_models.py``: MNIST 32, 32, 64, 64, 200, 200; CIFAR-10 64, 64, 128, 128, 256, 256;
the last dense layer (params[6]) has one unit per class. Each image is standardised to zero
mean and unit variance inside the model (§4.1), as TensorFlow's ``per_image_standardization``:
(x − mean) / max(std, 1/√D).

The seed text's Table (App. 7.4) lost the filter sizes and strides and shows no activation
between the dense layers and no dropout. Chosen: 3×3 filters, stride 1, VALID padding, ReLU
after the first two dense layers (Carlini & Wagner's model); no dropout (the table lists none;
Carlini & Wagner use dropout 0.5 after the first dense layer); Glorot-uniform weights and zero
biases (Keras defaults of that code).
"""

from __future__ import annotations

import torch
from torch import nn

from robust.models import ARCHS
from robust.models.layers import PerImageStandardize, scaled

WIDTHS = {"mnist": (32, 32, 64, 64, 200, 200), "cifar10": (64, 64, 128, 128, 256, 256)}
KERNEL = 3


class SgrNet(nn.Module):
    def __init__(self, in_shape: tuple[int, int, int], num_classes: int, widths: tuple[int, ...]):
        super().__init__()
        channels, height, width_px = in_shape
        c1, c2, c3, c4, h1, h2 = widths
        side_h, side_w = _feature_side(height), _feature_side(width_px)
        if side_h < 1 or side_w < 1:
            raise ValueError(f"SGR CNN needs inputs of at least 16×16 pixels, got {height}×{width_px}")
        self.standardize = PerImageStandardize()
        self.features = nn.Sequential(
            nn.Conv2d(channels, c1, KERNEL), nn.ReLU(),
            nn.Conv2d(c1, c2, KERNEL), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c2, c3, KERNEL), nn.ReLU(),
            nn.Conv2d(c3, c4, KERNEL), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.dense = nn.Sequential(nn.Linear(c4 * side_h * side_w, h1), nn.ReLU(), nn.Linear(h1, h2), nn.ReLU())
        self.head = nn.Linear(h2, num_classes)
        for layer in self.modules():
            if isinstance(layer, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(layer.weight)
                nn.init.zeros_(layer.bias)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.dense(self.features(self.standardize(x)).flatten(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))

    def l2_weights(self) -> list[torch.Tensor]:
        """Every convolution and dense weight (biases excluded): the "wdecay" baseline's penalty."""
        return [m.weight for m in self.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def _feature_side(n: int) -> int:
    # two VALID 3×3 convolutions (−4) and a pool (÷2), twice
    return ((n - 4) // 2 - 4) // 2


def _build(dataset: str, in_shape, num_classes: int, width: float) -> SgrNet:
    return SgrNet(in_shape, num_classes, tuple(scaled(n, width) for n in WIDTHS[dataset]))


@ARCHS.register("sgr-mnist")
def sgr_mnist(*, in_shape, num_classes, width):
    return _build("mnist", in_shape, num_classes, width)


@ARCHS.register("sgr-cifar10")
def sgr_cifar10(*, in_shape, num_classes, width):
    return _build("cifar10", in_shape, num_classes, width)
