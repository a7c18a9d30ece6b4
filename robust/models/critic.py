"""The networks of Matyasko & Chau, "Improved Network Robustness with Adversary Critic",
NeurIPS 2018 (arXiv 1810.12576, §5; official code github.com/aam-at/adversary_critic, ``models.py``).

Classifiers (registered architectures, MSRA/He-normal weights and zero biases as the official
``variance_scaling_initializer`` defaults; the official initializer draws from a truncated
normal, here an untruncated one):

- ``critic-fc``: "a fully-connected neural network with three hidden layers of size 1200
  units each" with ReLU (§5);
- ``lenet5``: "Lenet-5" (§5), as the official code builds it: conv 5×5×32 (VALID) + ReLU →
  max-pool 2 → conv 5×5×64 (VALID) + ReLU → max-pool 2 → FC 512 + ReLU → FC K.

Both take MNIST pixels in [0, 1] without further normalisation, as the official code.
``width`` scales every hidden layer (narrow smoke-profile variants).

``AdversaryCritic`` is the discriminator of the defense (§4, Figure 3; ``critic_mlp``): an MLP
1200-1200 with leaky ReLU (slope 0.2), one binary logit per class ("we use class label only in
the final classification layer"), and Gaussian noise added to the input of every layer (std
0.1 on the image, 0.5 on the hidden layers), drawn from an explicit generator.
"""

from __future__ import annotations

import itertools

import torch
from torch import nn

from robust.models import ARCHS
from robust.models.layers import Normalize, scaled

LEAKY_SLOPE = 0.2


def _msra_init(layers: list[nn.Module], generator: torch.Generator | None = None) -> None:
    for layer in layers:
        nn.init.kaiming_normal_(layer.weight, nonlinearity="relu", generator=generator)
        nn.init.zeros_(layer.bias)


class FullyConnected(nn.Module):
    """Flatten → (Linear + ReLU) × len(hidden) → Linear K."""

    def __init__(self, in_shape: tuple[int, int, int], num_classes: int, hidden: list[int]):
        super().__init__()
        channels = in_shape[0]
        self.normalize = Normalize([0.0] * channels, [1.0] * channels)
        sizes = [in_shape[0] * in_shape[1] * in_shape[2], *hidden]
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(sizes))
        self.head = nn.Linear(sizes[-1], num_classes)
        _msra_init([*self.hidden, self.head])

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        h = self.normalize(x).flatten(1)
        for layer in self.hidden:
            h = torch.relu(layer(h))
        return h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))

    def l2_weights(self) -> list[torch.Tensor]:
        """All weights but the last layer's (the official pre-training L2 penalty)."""
        return [layer.weight for layer in self.hidden]


def _after_lenet_convs(size: int) -> int:
    # two VALID 5×5 convolutions, each followed by a 2×2 max-pool
    return ((size - 4) // 2 - 4) // 2


class LeNet5(nn.Module):
    def __init__(self, in_shape: tuple[int, int, int], num_classes: int, width: float = 1.0):
        super().__init__()
        channels, height, width_px = in_shape
        c1, c2, hidden = scaled(32, width), scaled(64, width), scaled(512, width)
        self.normalize = Normalize([0.0] * channels, [1.0] * channels)
        self.conv1 = nn.Conv2d(channels, c1, 5)
        self.conv2 = nn.Conv2d(c1, c2, 5)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(c2 * _after_lenet_convs(height) * _after_lenet_convs(width_px), hidden)
        self.head = nn.Linear(hidden, num_classes)
        _msra_init([self.conv1, self.conv2, self.fc, self.head])

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        h = self.pool(torch.relu(self.conv1(self.normalize(x))))
        h = self.pool(torch.relu(self.conv2(h)))
        return torch.relu(self.fc(h.flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))

    def l2_weights(self) -> list[torch.Tensor]:
        """All weights but the last layer's (the official pre-training L2 penalty)."""
        return [self.conv1.weight, self.conv2.weight, self.fc.weight]


@ARCHS.register("critic-fc")
def critic_fc(*, in_shape, num_classes, width):
    return FullyConnected(in_shape, num_classes, [scaled(1200, width)] * 3)


@ARCHS.register("lenet5")
def lenet5(*, in_shape, num_classes, width):
    return LeNet5(in_shape, num_classes, width)


class AdversaryCritic(nn.Module):
    """Class-conditional critic: ``forward(x, generator)`` → (N, K) binary logits, one per class.

    Noise is added to the input of every layer whenever a generator is given (the critic is
    used in training only, as in the official code); ``generator=None`` gives the noise-free
    critic. Weights are drawn from ``init_generator`` so that building the critic lazily
    inside training leaves the global RNG alone.
    """

    def __init__(self, in_features: int, num_classes: int, *, hidden: list[int], input_noise: float,
                 hidden_noise: float, init_generator: torch.Generator | None = None,
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None):
        super().__init__()
        sizes = [in_features, *hidden]
        device = torch.device("cpu") if device is None else device
        # skip_init: the default initialisation would draw from the global RNG
        self.hidden = nn.ModuleList(nn.utils.skip_init(nn.Linear, a, b, device=device, dtype=dtype)
                                    for a, b in itertools.pairwise(sizes))
        self.head = nn.utils.skip_init(nn.Linear, sizes[-1], num_classes, device=device, dtype=dtype)
        self.noise = [input_noise] + [hidden_noise] * len(hidden)
        with torch.no_grad():
            _msra_init([*self.hidden, self.head], init_generator)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        h = x.flatten(1)
        for std, layer in zip(self.noise, [*self.hidden, self.head]):
            if generator is not None and std > 0:
                noise = torch.randn(h.shape, generator=generator, device=generator.device, dtype=h.dtype)
                h = h + std * noise.to(h.device)
            h = layer(h)
            if layer is not self.head:
                h = nn.functional.leaky_relu(h, LEAKY_SLOPE)
        return h
