"""DDN: Rony et al., "Decoupling Direction and Norm for Efficient Gradient-Based L2 Adversarial
Attacks and Defenses", arXiv 1811.09600 (Algorithm 1, untargeted).

A minimal-perturbation attack: it has no ε budget and its result is read as a distance.
Each iteration takes a gradient step of length α_k on the direction of δ (ascent on the
cross-entropy, g/‖g‖₂) and, decoupled from it, sets the norm: ε_k = (1 − γ)·ε_{k−1} if the
current iterate is adversarial, (1 + γ)·ε_{k−1} if not; then x̃ = clip(x + ε_k·δ/‖δ‖₂).

Faithful to the paper and its reference code (jeromerony/fast_adversarial, ``ddn.py``):
ε₀ = ``init_norm`` = 1, γ = 0.05, δ₀ = 0, α cosine-annealed from 1 to 0.01 over the
``steps`` iterations (α_k = 0.01 + 0.99·(1 + cos(πk/K))/2 for k = 1..K, the reference code's
``CosineAnnealingLR`` stepped before each iteration), ε capped at the largest L2 distance
the box allows, ‖max(x, 1 − x)‖₂; the result is the adversarial iterate with the smallest
‖δ‖₂ seen, and the input itself when none was adversarial (an input already
misclassified is returned unchanged: its first iterate, δ = 0, is adversarial).

Simplified / chosen here:
- no 8-bit quantisation of the iterates (the reference's ``quantize=True``): inputs here
  are floats in [0, 1] for every other attack too, as in Foolbox's DDN;
- a zero gradient gives no direction step (the reference draws a random direction from the
  global RNG); the iterate is still renormalised to ε_k;
- the last iterate is also checked (the reference only checks iterates 0..K−1).

Batched: the norms, the best distance so far and the best example are per-example tensors.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from robust.attacks import ATTACKS
from robust.attacks.base import (
    check_fraction,
    check_inputs,
    check_positive,
    check_positive_int,
    clip_box,
    flat_norm,
    frozen_parameters,
    logits_and_input_gradient,
    normalize_l2,
    per_example,
)

MIN_STEP = 0.01  # α at the end of the cosine schedule (reference: eta_min=0.01, from lr 1)


def step_sizes(steps: int) -> list[float]:
    """α_1..α_K: cosine annealing from 1 towards ``MIN_STEP``, reaching it at the last step."""
    return [MIN_STEP + (1 - MIN_STEP) * (1 + math.cos(math.pi * k / steps)) / 2 for k in range(1, steps + 1)]


@ATTACKS.register("ddn")
@frozen_parameters
def ddn(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    steps: int = 100,
    gamma: float = 0.05,
    init_norm: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Return the smallest-L2 adversarial DDN iterate per input (the input itself if none), detached.

    ``steps`` iterations (100 is the paper's and AFD's evaluation setting), norm factor
    ``gamma``, initial norm ``init_norm`` (L2, [0, 1] image units). ``generator`` is accepted
    for the common attack signature; DDN draws nothing.
    """
    steps = check_positive_int(steps, "steps")
    gamma = check_fraction(gamma, "gamma")
    init_norm = check_positive(init_norm, "init_norm")
    check_inputs(x, y)

    x = x.detach()
    x_adv = x
    worst_norm = flat_norm(torch.maximum(x, 1 - x), 2)
    norm = torch.full_like(worst_norm, init_norm)
    best_l2 = torch.full_like(worst_norm, math.inf)
    best = x

    def track(logits: torch.Tensor, x_adv: torch.Tensor) -> torch.Tensor:
        # keep the exact point the model saw, so that what is returned is what was checked
        nonlocal best_l2, best
        adversarial = logits.argmax(dim=1) != y
        l2 = flat_norm(x_adv - x, 2)
        better = adversarial & (l2 < best_l2)
        best_l2 = torch.where(better, l2, best_l2)
        best = torch.where(per_example(better, x), x_adv, best)
        return adversarial

    for alpha in step_sizes(steps):
        logits, grad = logits_and_input_gradient(model, x_adv, y)
        adversarial = track(logits, x_adv)
        delta = x_adv - x + alpha * normalize_l2(grad)
        norm = torch.minimum(norm * torch.where(adversarial, 1 - gamma, 1 + gamma), worst_norm)
        x_adv = clip_box(x + normalize_l2(delta) * per_example(norm, delta))
    with torch.no_grad():
        track(model(x_adv), x_adv)
    return best.detach()
