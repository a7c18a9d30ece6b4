"""JSMA: Papernot et al., "The Limitations of Deep Learning in Adversarial Settings", arXiv 1511.07528,
in the one-pixel-per-iteration form of Jakubovitz & Giryes 2018 (arXiv 1803.08680, §4.3, Fig. 2:
"1 pixel attack" for 80 (MNIST) / 200 (CIFAR-10) "epochs", ε the magnitude of the change).

Targeted, L0-type, increasing features. Each iteration takes the forward derivative at the current
iterate and changes the one input feature with the largest single-feature saliency (Papernot et al.,
eq. 8, increasing direction):

    S[i] = ∂Z_t/∂x_i · |Σ_{j≠t} ∂Z_j/∂x_i|  if ∂Z_t/∂x_i > 0 and Σ_{j≠t} ∂Z_j/∂x_i < 0, else 0,

by x_i ← min(x_i + ε, 1). ``steps`` iterations change at most ``steps`` features.

Faithful: the saliency map and its sign conditions, the increase direction, the stop once the
prediction is the target class (an example that reaches its target is never changed again, so a
run with more steps extends a run with fewer), and the search domain of the reference
implementation (cleverhans ``jsma_symbolic``): features already at 1 are never candidates and a
feature leaves the domain once modified. With the paper's θ = 1 every modified feature
saturates, so this equals Papernot et al.'s "remove saturated features"; with ε < 1 it is what
makes the attack L∞-bounded: every feature changes at most once, by at most ε, so
‖δ‖∞ ≤ ε and ‖δ‖₀ ≤ ``steps`` (registered with norm "linf" for the ε budget).

Chosen here:
- derivatives of the logits Z (JSMA-Z in Carlini & Wagner's naming, arXiv 1608.04644), as the
  single-feature map with a target and an "others" term needs: of the softmax outputs F,
  Σ_{j≠t} ∂F_j = −∂F_t, and the map reduces to (∂F_t)² (the form cleverhans 2.x computes);
- one feature per iteration (Papernot et al. and cleverhans change a pair), as in the "1 pixel"
  attack of Jakubovitz & Giryes; a "pixel" is one input feature, i.e. one channel of one pixel;
- the target: ``target="random"`` (default) draws it uniformly among the K − 1 classes other than
  the label, from ``generator``, as cleverhans' ``random_targets`` does when no target is given
  (a roll of the one-hot label by 1..K−1); ``target="next"`` is (y + 1) mod K, deterministic
  without a generator. Jakubovitz & Giryes do not say how targets were chosen;
- an example with no admissible feature (all saliencies 0) stops: its iterate, and so its
  derivatives, would not change again. The paper's algorithm has no rule for this case.

Batched: one forward pass on the examples still being attacked and two backward passes per
iteration (target logit; sum of the other logits), each summed over the batch so that every
example gets its own gradient. The forward pass sees only the examples still being attacked,
which matters only for a model left in train mode with batch-dependent layers (BatchNorm).
"""

from __future__ import annotations

import torch
from torch import nn

from robust.attacks import ATTACKS
from robust.attacks.base import (
    check_choice,
    check_eps,
    check_inputs,
    check_positive_int,
    frozen_parameters,
)

TARGETS = ("next", "random")


def choose_target(y: torch.Tensor, n_classes: int, rule: str, generator: torch.Generator | None) -> torch.Tensor:
    """The target class of every example: (y + 1) mod K, or uniform among the classes other than y."""
    if n_classes < 2:
        raise ValueError(f"jsma needs a model with at least 2 classes, got {n_classes}")
    if rule == "next":
        return (y + 1) % n_classes
    # the global RNG is never used: random targets without a seeded generator are irreproducible
    if not isinstance(generator, torch.Generator):
        raise ValueError(f"jsma: target='random' needs an explicit seeded torch.Generator, got {generator!r}")
    shift = torch.randint(1, n_classes, y.shape, generator=generator, device=generator.device)
    return (y + shift.to(y.device)) % n_classes


def saliency_map(grad_target: torch.Tensor, grad_other: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """Papernot et al. eq. 8 (increasing features) over (N, D) derivatives; 0 outside ``candidates``."""
    admissible = candidates & (grad_target > 0) & (grad_other < 0)
    return torch.where(admissible, grad_target * grad_other.abs(), torch.zeros_like(grad_target))


def _target_and_other_gradients(
    logits: torch.Tensor, x: torch.Tensor, target: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """∂Z_t/∂x and ∂(Σ_{j≠t} Z_j)/∂x of every example, flattened to (N, D)."""
    target_logit = logits.gather(1, target.unsqueeze(1)).sum()
    (grad_target,) = torch.autograd.grad(target_logit, x, retain_graph=True)
    (grad_other,) = torch.autograd.grad(logits.sum() - target_logit, x)
    return grad_target.flatten(1), grad_other.flatten(1)


@ATTACKS.register("jsma")
@frozen_parameters
def jsma(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    steps: int,
    target: str = "random",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Return single-feature JSMA examples towards a target class, detached.

    ``eps`` is the increase of a modified feature (in [0, 1] image units; 1 is Papernot et al.'s
    θ), ``steps`` the number of iterations, i.e. the most features modified (Jakubovitz & Giryes'
    "epochs": 80 on MNIST, 200 on CIFAR-10). ``target`` is "random" (needs ``generator``) or
    "next" (see the module docstring).
    """
    eps = check_eps(eps)
    steps = check_positive_int(steps, "steps")
    target = check_choice(target, "target", TARGETS)
    check_inputs(x, y)

    x = x.detach()
    adv = x.flatten(1).clone()
    modified = torch.zeros_like(adv, dtype=torch.bool)
    goal = None  # target classes, chosen once the first forward pass gives K
    active = torch.arange(len(x), device=x.device)  # examples neither at their target nor stuck
    for _ in range(steps):
        if active.numel() == 0:
            break
        x_in = adv[active].view(-1, *x.shape[1:]).requires_grad_(True)
        logits = model(x_in)
        if goal is None:
            goal = choose_target(y, logits.shape[1], target, generator)
        grad_target, grad_other = _target_and_other_gradients(logits, x_in, goal[active])
        candidates = (adv[active] < 1) & ~modified[active]
        best_saliency, best = saliency_map(grad_target, grad_other, candidates).max(dim=1)
        keep = (logits.detach().argmax(dim=1) != goal[active]) & (best_saliency > 0)
        active, best = active[keep], best[keep]
        adv[active, best] = (adv[active, best] + eps).clamp_max(1.0)
        modified[active, best] = True
    return adv.view_as(x).detach()
