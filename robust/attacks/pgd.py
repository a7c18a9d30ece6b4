"""PGD: Madry et al., "Towards Deep Learning Models Resistant to Adversarial Attacks", arXiv 1706.06083.

Untargeted projected gradient ascent on the cross-entropy loss, in three norms. Common to
all: optional start at a random point of the ε-ball, ``steps`` steps of length ``step_size``
(measured in the attack's norm), after every step projection onto the ε-ball around the clean
input and clipping to [0, 1]; the last iterate is returned (no restarts, no best-iterate
tracking).

- ``linf``: faithful to the paper and its reference code (MadryLab mnist_challenge /
  cifar10_challenge): uniform start in the cube, gradient-sign steps, element-wise clamp.
- ``l2``: the paper's L2 variant as in MadryLab's ``robustness`` library and
  torchattacks.PGDL2: steps along g/‖g‖₂, projection by rescaling. The random start is
  uniform in the ball (Gaussian direction, radius ε·U^(1/D)); torchattacks draws the
  radius as ε·U, which is not uniform.
- ``l1``: the sparse L1 descent (SLIDE) of Tramèr & Boneh, "Adversarial Training and
  Robustness for Multiple Perturbations", arXiv 1904.13000: the steepest L1 ascent
  direction moves a single coordinate, too little per step, so the step spreads
  ``step_size`` evenly (by sign) over the coordinates whose |g| reaches the ``sparsity``
  quantile of |g|, after zeroing the gradient of pixels already at the box edge it points
  past (cleverhans' ``clip_grad`` option; Foolbox always does it). ``sparsity`` defaults to 0.99, the
  99th percentile that the first author's own implementation (cleverhans SparseL1Descent,
  ``grad_sparsity=99``) and Foolbox use, so that results compare with theirs;
  advertorch's SparseL1DescentAttack uses 0.95, a denser step. The
  projection is the exact Euclidean projection onto the L1 ball intersected with the box
  (``base.project_l1``); Tramèr & Boneh project onto the ball and then clip, which can
  leave budget on pixels the clip cannot use. The random start is uniform in the L1 ball.

Each norm is one ``Geometry`` in ``NORMS`` (random start, ascent step, projection), so a
norm is one more entry, not a branch inside the loop, except for L∞, whose projection is a
single clamp. On CPU the L∞ iterates go to the model laid out channels-last
(``channels_last``): the same values in faster kernels (the benchmark's PGD-40 1.3–1.6×
faster). Their rounding differs, and a sign step amplifies it where a gradient coordinate is
within rounding of 0: on the benchmark batch 2 of 64 trajectories part from those of the
default layout (and of torchattacks) somewhere in 40 steps, with the same robust accuracy.
The L2 and L1 iterates keep the caller's layout: their steps normalise the gradient, which
for confidently classified points is itself of rounding size (‖g‖ ≈ 1e-12), so that only the
same kernels reproduce torchattacks.PGDL2's steps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from robust.attacks import ATTACKS
from robust.attacks.base import (
    KEY,
    channels_last,
    check_bool,
    check_choice,
    check_eps,
    check_fraction,
    check_inputs,
    check_positive,
    check_positive_int,
    clip_box,
    frozen_parameters,
    gaussian_noise,
    input_gradient,
    normalize_l2,
    per_example,
    project_l1,
    project_l2,
    project_linf,
    require_generator,
    uniform_noise,
)
from robust.errors import ConfigError

DEFAULT_SPARSITY = 0.99  # L1 steps move the coordinates above this quantile of |g| (see module docstring)


@dataclass(frozen=True)
class Geometry:
    """What PGD needs to know about a norm ball."""

    random_start: Callable[[torch.Tensor, float, torch.Generator], torch.Tensor]  # (x, eps, gen) -> δ₀
    ascend: Callable[[torch.Tensor, float, torch.Tensor, float], torch.Tensor]  # (grad, step, x_adv, q) -> step
    project: Callable[[torch.Tensor, float, torch.Tensor], torch.Tensor]  # (δ, eps, x) -> δ inside the ball


def _uniform_l2_ball(x: torch.Tensor, eps: float, generator: torch.Generator) -> torch.Tensor:
    direction = normalize_l2(gaussian_noise(x, generator))
    dim = x[0].numel()
    radius = eps * uniform_noise(x.new_empty(len(x)), 0.0, 1.0, generator) ** (1.0 / dim)
    return direction * per_example(radius, x)


def _uniform_l1_ball(x: torch.Tensor, eps: float, generator: torch.Generator) -> torch.Tensor:
    # D + 1 i.i.d. exponentials normalised by their sum are uniform on the D-simplex; dropping
    # the last one leaves a point uniform in {u ≥ 0, Σu ≤ 1}; random signs fill the L1 ball
    flat = x.flatten(1)
    exponential = -torch.log1p(-uniform_noise(flat.new_empty(len(flat), flat.shape[1] + 1), 0.0, 1.0, generator))
    simplex = exponential[:, :-1] / exponential.sum(dim=1, keepdim=True)
    signs = torch.where(uniform_noise(flat, 0.0, 1.0, generator) < 0.5, -1.0, 1.0).to(x.dtype)
    return (eps * signs * simplex).view_as(x)


def sparse_l1_step(grad: torch.Tensor, step_size: float, x_adv: torch.Tensor, sparsity: float) -> torch.Tensor:
    """SLIDE step of L1 length ``step_size`` over the coordinates whose |g| reaches the ``sparsity`` quantile."""
    # a pixel at the box edge that the gradient pushes past would only waste the step
    blocked = ((x_adv <= 0) & (grad < 0)) | ((x_adv >= 1) & (grad > 0))
    magnitude = torch.where(blocked, torch.zeros_like(grad), grad.abs()).flatten(1)
    dim = magnitude.shape[1]
    keep_count = max(1, min(dim, round((1.0 - sparsity) * dim)))
    threshold = magnitude.kthvalue(dim - keep_count + 1, dim=1, keepdim=True).values
    # ties at the threshold are all kept (the percentile rule); zero gradients never are
    keep = ((magnitude >= threshold) & (magnitude > 0)).to(grad.dtype)
    count = keep.sum(dim=1, keepdim=True).clamp_min(1)
    return (step_size * grad.flatten(1).sign() * keep / count).view_as(grad)


def _project_l1_box(delta: torch.Tensor, eps: float, x: torch.Tensor) -> torch.Tensor:
    return project_l1(delta, eps, lower=-x, upper=1 - x)


NORMS: dict[str, Geometry] = {
    "linf": Geometry(
        random_start=lambda x, eps, gen: uniform_noise(x, -eps, eps, gen),
        ascend=lambda grad, step_size, x_adv, sparsity: step_size * grad.sign(),
        project=lambda delta, eps, x: project_linf(delta, eps),
    ),
    "l2": Geometry(
        random_start=_uniform_l2_ball,
        ascend=lambda grad, step_size, x_adv, sparsity: step_size * normalize_l2(grad),
        project=lambda delta, eps, x: project_l2(delta, eps),
    ),
    "l1": Geometry(random_start=_uniform_l1_ball, ascend=sparse_l1_step, project=_project_l1_box),
}


@ATTACKS.register("pgd")
@frozen_parameters
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
    sparsity: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Return the last PGD iterate, detached, inside the ``norm`` ε-ball around ``x`` and in [0, 1].

    ``eps`` and ``step_size`` are in the units of ``norm`` ("linf", "l2" or "l1"), on [0, 1]
    images. ``sparsity`` (L1 only; default ``DEFAULT_SPARSITY`` = 0.99) is the quantile of
    |g| above which coordinates take part in an L1 step. ``generator`` (required when
    ``random_start``) is the only source of randomness.
    """
    norm = check_choice(norm, "norm", NORMS)
    geometry = NORMS[norm]
    eps = check_eps(eps, norm=norm)
    steps = check_positive_int(steps, "steps")
    step_size = check_positive(step_size, "step_size")
    random_start = check_bool(random_start, "random_start")
    if sparsity is not None and norm != "l1":
        raise ConfigError(f"{KEY}.sparsity", f"only applies to norm 'l1', not {norm!r}")
    sparsity = check_fraction(DEFAULT_SPARSITY if sparsity is None else sparsity, "sparsity")
    check_inputs(x, y)

    x = x.detach()
    x_adv = x
    if random_start:
        x_adv = clip_box(x + geometry.random_start(x, eps, require_generator(generator, "pgd")))
    if norm == "linf":
        # the L∞ ball and the box are both boxes: one clamp to their intersection projects onto both
        lower, upper = (x - eps).clamp_min(0.0), (x + eps).clamp_max(1.0)
        for _ in range(steps):
            grad = input_gradient(model, channels_last(x_adv), y)
            x_adv = torch.clamp(x_adv + step_size * grad.sign(), lower, upper)
        return x_adv.detach()
    for _ in range(steps):
        grad = input_gradient(model, x_adv, y)
        x_adv = x_adv + geometry.ascend(grad, step_size, x_adv, sparsity)
        x_adv = clip_box(x + geometry.project(x_adv - x, eps, x))
    return x_adv.detach()

