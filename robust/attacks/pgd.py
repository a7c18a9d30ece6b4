"""PGD: Madry et al., "Towards Deep Learning Models Resistant to Adversarial Attacks", arXiv 1706.06083.

Untargeted projected gradient ascent on the cross-entropy loss. Faithful to the paper's
L∞ attack (and to its reference code, MadryLab mnist_challenge/cifar10_challenge): optional
start at a uniform random point of the ε-ball, ``steps`` steps of ``step_size`` along the
gradient sign, projection onto the ε-ball around the clean input and clipping to [0, 1]
after every step; the last iterate is returned (no restarts, no best-iterate tracking).

Each norm is one entry of ``NORMS`` (random start, ascent direction, projection), so an
L2 variant is one more entry, not a branch inside the loop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from robust.attacks import ATTACKS
from robust.attacks.base import (
    check_bool,
    check_choice,
    check_eps,
    check_inputs,
    check_positive,
    check_positive_int,
    clip_box,
    input_gradient,
    project_linf,
    require_generator,
    uniform_noise,
)


@dataclass(frozen=True)
class Geometry:
    """What PGD needs to know about a norm ball."""

    random_start: Callable[[torch.Tensor, float, torch.Generator], torch.Tensor]  # (x, eps, gen) -> δ₀
    ascend: Callable[[torch.Tensor, float], torch.Tensor]  # (grad, step_size) -> step
    project: Callable[[torch.Tensor, float], torch.Tensor]  # (δ, eps) -> δ inside the ball


NORMS: dict[str, Geometry] = {
    "linf": Geometry(
        random_start=lambda x, eps, gen: uniform_noise(x, -eps, eps, gen),
        ascend=lambda grad, step_size: step_size * grad.sign(),
        project=project_linf,
    ),
}


@ATTACKS.register("pgd")
def pgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    steps: int,
    step_size: float,
    norm: str = "linf",
    random_start: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Return the last PGD iterate, detached, inside the ``norm`` ε-ball around ``x`` and in [0, 1].

    ``generator`` (required when ``random_start``) is the only source of randomness.
    """
    eps = check_eps(eps)
    steps = check_positive_int(steps, "steps")
    step_size = check_positive(step_size, "step_size")
    geometry = NORMS[check_choice(norm, "norm", NORMS)]
    random_start = check_bool(random_start, "random_start")
    check_inputs(x, y)

    x = x.detach()
    x_adv = x
    if random_start:
        x_adv = clip_box(x + geometry.random_start(x, eps, require_generator(generator, "pgd")))
    for _ in range(steps):
        grad = input_gradient(model, x_adv, y)
        x_adv = x_adv + geometry.ascend(grad, step_size)
        x_adv = clip_box(x + geometry.project(x_adv - x, eps))
    return x_adv.detach()
