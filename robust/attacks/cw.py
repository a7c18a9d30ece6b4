"""C&W L2: Carlini & Wagner, "Towards Evaluating the Robustness of Neural Networks", arXiv 1608.04644 (§V.A).

A minimal-perturbation attack: it has no ε budget and its result is read as a distance.
The perturbation lives in tanh space, x' = (tanh(w) + 1)/2, so the box holds by
construction, and Adam minimises ‖x' − x‖₂² + c·f(x') with the margin loss
f(x') = max(Z_y − max_{k≠y} Z_k, −κ) on the logits Z (untargeted). A binary search over
c, per example, keeps the smallest c that still succeeds.

Faithful to the paper and its reference code (carlini/nn_robust_attacks, ``l2_attack.py``):
- w starts at arctanh of the (slightly shrunk) clean input, i.e. modifier 0; Adam
  (lr 0.01) and the modifier restart at every binary-search step;
- the binary search: a success halves towards the lower bound, a failure multiplies c by
  10 until some c succeeds and bisects afterwards; each example has its own c and bounds;
- success means max_{k≠y} Z_k − Z_y > κ (the ``confidence``), checked at every iterate;
  the result is the successful iterate with the smallest ‖x' − x‖₂ over all steps;
- early abort: every ``steps // 10`` iterations the batch loss must have fallen by 0.01 %.

Chosen here:
- defaults follow the adversary-critic evaluation (Matyasko & Chau, Carlini's code):
  1,000 steps, 9 binary-search steps, initial c = 1e-3, κ = 0, lr = 0.01; the reference
  code's own default is 10,000 steps;
- an example with no successful iterate is returned unchanged (x_adv = x), and so is an
  example that already satisfies the success condition at x (distance 0), the convention
  DeepFool follows here; the reference returns the clean input for failures too;
- Adam is PyTorch's form (ε added to √v̂); the reference's TensorFlow Adam adds it to √v.

Batched: c, its bounds and the best distance so far are (N,) tensors; one forward and one
backward pass per iteration for the whole batch, no per-example loop.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from robust.attacks import ATTACKS
from robust.attacks.base import (
    check_bool,
    check_inputs,
    check_non_negative,
    check_positive,
    check_positive_int,
    clip_box,
    frozen_parameters,
    per_example,
)

TANH_SHRINK = 1 - 1e-6  # reference: arctanh(x · 1.999999) on [−0.5, 0.5] images, so w stays finite at 0 and 1
ADAM_BETAS, ADAM_EPS = (0.9, 0.999), 1e-8


def margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """max_{k≠y} Z_k − Z_y per example: positive exactly when the prediction is not ``y``."""
    true = logits.gather(1, y.unsqueeze(1)).squeeze(1)
    others = logits.scatter(1, y.unsqueeze(1), -math.inf)
    return others.max(dim=1).values - true


@ATTACKS.register("cw")
@frozen_parameters
def cw(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    steps: int = 1000,
    binary_steps: int = 9,
    initial_const: float = 1e-3,
    confidence: float = 0.0,
    lr: float = 0.01,
    abort_early: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Return the smallest-L2 successful C&W example per input (the input itself if none), detached.

    ``steps`` Adam iterations for each of ``binary_steps`` values of c, starting from
    ``initial_const``; ``confidence`` is κ; ``lr`` Adam's learning rate; ``abort_early``
    stops a binary-search step once the loss stalls. ``generator`` is accepted for the
    common attack signature; C&W draws nothing.
    """
    steps = check_positive_int(steps, "steps")
    binary_steps = check_positive_int(binary_steps, "binary_steps")
    initial_const = check_positive(initial_const, "initial_const")
    confidence = check_non_negative(confidence, "confidence")
    lr = check_positive(lr, "lr")
    abort_early = check_bool(abort_early, "abort_early")
    check_inputs(x, y)

    x = x.detach()
    n = len(x)
    w_clean = torch.atanh((2 * x - 1) * TANH_SHRINK)
    const = torch.full((n,), initial_const, dtype=x.dtype, device=x.device)
    lower = torch.zeros_like(const)
    upper = torch.full_like(const, math.inf)
    with torch.no_grad():
        already = margin(model(x), y) > confidence
    best_l2 = torch.where(already, torch.zeros_like(const), torch.full_like(const, math.inf))
    best = x.clone()
    check_every = max(steps // 10, 1)

    for _ in range(binary_steps):
        modifier = torch.zeros_like(x)
        adam_m, adam_v = torch.zeros_like(x), torch.zeros_like(x)
        succeeded = torch.zeros(n, dtype=torch.bool, device=x.device)
        previous = math.inf
        for t in range(1, steps + 1):
            modifier.requires_grad_(True)
            x_adv = (torch.tanh(w_clean + modifier) + 1) / 2
            logits = model(x_adv)
            l2_sq = (x_adv - x).flatten(1).pow(2).sum(dim=1)
            gap = margin(logits, y)
            loss = (l2_sq + const * (-gap).clamp_min(-confidence)).sum()
            (grad,) = torch.autograd.grad(loss, modifier)

            with torch.no_grad():
                success = gap > confidence
                succeeded |= success
                better = success & (l2_sq < best_l2)
                best_l2 = torch.where(better, l2_sq, best_l2)
                best = torch.where(per_example(better, x), x_adv, best)
            if abort_early and (t - 1) % check_every == 0:
                if loss.item() > previous * 0.9999:
                    break
                previous = loss.item()

            modifier = modifier.detach()
            adam_m.mul_(ADAM_BETAS[0]).add_(grad, alpha=1 - ADAM_BETAS[0])
            adam_v.mul_(ADAM_BETAS[1]).addcmul_(grad, grad, value=1 - ADAM_BETAS[1])
            m_hat = adam_m / (1 - ADAM_BETAS[0] ** t)
            v_hat = adam_v / (1 - ADAM_BETAS[1] ** t)
            modifier -= lr * m_hat / (v_hat.sqrt() + ADAM_EPS)

        # success: c may be smaller; failure: larger (×10 until an upper bound is known)
        upper = torch.where(succeeded, torch.minimum(upper, const), upper)
        lower = torch.where(succeeded, lower, torch.maximum(lower, const))
        const = torch.where(upper.isfinite(), (lower + upper) / 2, const * 10)
    return clip_box(best).detach()
