"""A small trained classifier shared by the attack tests: a CNN with BatchNorm fit to noisy prototypes."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

N_CLASSES = 4


def _task(gen: torch.Generator, n: int, protos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    # prototypes near mid-grey plus mild noise: the [0, 1] box rarely binds, so failures of
    # unconstrained steps (DeepFool) cannot hide behind clipping
    y = torch.randint(0, N_CLASSES, (n,), generator=gen)
    x = (protos[y] + 0.15 * torch.randn(n, 1, 8, 8, generator=gen)).clamp(0, 1)
    return x, y


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def trained_classifier(n_test: int, min_accuracy: float) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """The model in eval mode and ``n_test`` held-out points; BatchNorm makes train/eval mode matter."""
    gen = torch.Generator().manual_seed(0)
    protos = 0.5 + 0.1 * (2 * torch.rand(N_CLASSES, 1, 8, 8, generator=gen) - 1)
    x_train, y_train = _task(gen, 256, protos)
    x_test, y_test = _task(gen, n_test, protos)
    with torch.random.fork_rng():  # module init uses the global RNG; keep it out of other tests
        torch.manual_seed(0)
        model = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(),
            nn.Linear(8 * 64, 32), nn.ReLU(), nn.Linear(32, N_CLASSES),
        )
    fit(model, x_train, y_train, steps=100)
    assert accuracy(model, x_test, y_test) > min_accuracy, "fixture model failed to train; tests would be vacuous"
    return model, x_test, y_test


def fit(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, steps: int, lr: float = 1e-2) -> nn.Module:
    """Full-batch Adam on the cross-entropy; returns the model in eval mode with no gradients left."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    model.eval().zero_grad(set_to_none=True)
    return model


def fit_with_defense(model: nn.Module, params: dict, x: torch.Tensor, y: torch.Tensor, *, steps: int,
                     lr: float = 1e-2) -> nn.Module:
    """Full-batch Adam steps of a defense's training step, the way the trainer takes them; eval mode after."""
    from robust.defenses import build_defense

    defense = build_defense(params)
    defense.generator = torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        model.train()
        opt.zero_grad()
        loss, _ = defense.training_step(model, x, y)
        loss.backward()
        opt.step()
    return model.eval()


def affine_classifier(gen: torch.Generator, n_classes: int, n: int = 32):
    """A random affine classifier in float64 and ``n`` points it labels itself (every point correct).

    Its class regions are polytopes, so the exact distance to the closest boundary is known.
    Returns (model, linear layer, x, logits, y).
    """
    dim = 3 * 4 * 4
    linear = nn.Linear(dim, n_classes).double()
    with torch.no_grad():
        linear.weight.copy_(torch.randn(n_classes, dim, generator=gen, dtype=torch.float64))
        linear.bias.copy_(torch.randn(n_classes, generator=gen, dtype=torch.float64))
    model = nn.Sequential(nn.Flatten(), linear)
    x = 0.4 + 0.2 * torch.rand(n, 3, 4, 4, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        logits = model(x)
    return model, linear, x, logits, logits.argmax(1)


def prototype_batch(n: int, *, side: int, classes: int, seed: int = 1,
                    dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Noisy copies of fixed random class prototypes (1×side×side, in [0, 1]): learnable in a few steps."""
    means = torch.rand((classes, 1, side, side), generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, classes, (n,), generator=g)
    x = (means[y] + 0.15 * torch.randn((n, 1, side, side), generator=g)).clamp(0, 1)
    return x.to(dtype), y
