"""Input-gradient regularization (double backpropagation): Ross & Doshi-Velez, "Improving the
Adversarial Robustness and Interpretability of Deep Neural Networks by Regularizing their Input
Gradients", AAAI 2018, arXiv 1711.09404; the form compared in Jakubovitz & Giryes 2018
(arXiv 1803.08680), eq. 5.

Loss = cross-entropy + λ·R, with R built from the per-example input gradients
∇ₓℓ_i = ∂ℓ_i/∂x_i of the cross-entropy ℓ_i. The gradient is taken with ``create_graph=True``
so R backpropagates to the parameters (the second backward pass of double backpropagation).
Eq. 5 writes R = Σ_d Σ_i (∂/∂x_d Σ_k −y_ik log f_k(x_i))², i.e. the gradient of the
*summed* cross-entropy, beside the summed cross-entropy of eq. 4. Params ``reduction``:

- ``sum`` (default): mean CE + (λ/N)·Σ_i ‖∇ₓℓ_i‖² — eq. 5 with the sum-reduced CE inside the
  gradient, the whole loss (summed CE + λ·eq. 5) divided by the batch size N, as the jacobian
  defense's ``eq4``; the minimiser is the paper's. The penalty is λ·mean_i ‖∇ₓℓ_i‖², so λ does
  not depend on the batch size.
- ``mean``: mean CE + λ·Σ_{i,d} (∂ mean_j ℓ_j / ∂x_{i,d})² = mean CE + (λ/N²)·Σ_i ‖∇ₓℓ_i‖² —
  the gradient of the mean-reduced CE, as most double-backpropagation code writes it. The same
  objective as ``sum`` needs λ N times larger, and the weight per example shrinks like 1/N at a
  fixed λ: λ is tied to the batch size.

Faithful: the cross-entropy of the logits, squared ℓ2 norm of its input gradient, one forward
pass for both terms (same dropout mask); dropout stays on during the step, as for the jacobian
defense. The per-example gradient is one backward pass of Σ_i ℓ_i, exact when examples do not
interact (see ``robust.jacobian`` for BatchNorm in train mode). Not reproduced: Ross &
Doshi-Velez's optional explanation mask ("right for the right reasons"), unused in eq. 5.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from robust.defenses.base import KEY, Defense, is_number, register_defense
from robust.errors import ConfigError


def _sum(sq: torch.Tensor) -> torch.Tensor:
    return sq.mean()


def _mean(sq: torch.Tensor) -> torch.Tensor:
    return sq.sum() / len(sq) ** 2


# reduction name → R(per-example ‖∇ₓℓ_i‖²); the loss is mean CE + λ·R
REDUCTIONS = {"sum": _sum, "mean": _mean}


def input_gradient_sq(
    logits: torch.Tensor, x: torch.Tensor, y: torch.Tensor, *, create_graph: bool = False
) -> torch.Tensor:
    """Per-example ‖∂ℓ_i/∂x_i‖² (B,) of the cross-entropy, from logits computed from ``x``."""
    summed = F.cross_entropy(logits, y, reduction="sum")
    # the gradient of the sum holds every example's own gradient, as examples do not interact;
    # materialize_grads: an input the logits ignore has a zero gradient, not an error
    (grad,) = torch.autograd.grad(summed, x, retain_graph=True, create_graph=create_graph, materialize_grads=True)
    return grad.pow(2).flatten(1).sum(1)


@register_defense("input_gradient")
class InputGradientRegularization(Defense):
    """Params: ``lambda`` (→ argument ``lam``, ≥ 0, required), ``reduction`` (sum | mean),
    ``adversarial`` (optional)."""

    example_params = {"lambda": 0.1}
    penalizes_originals = True

    def __init__(self, *, lam: float, reduction: str = "sum", adversarial: dict | None = None):
        super().__init__(adversarial=adversarial)
        if not is_number(lam) or lam < 0:
            raise ConfigError(f"{KEY}.lambda", f"must be a number >= 0, got {lam!r}")
        if reduction not in REDUCTIONS:
            raise ConfigError(f"{KEY}.reduction", f"got {reduction!r}", REDUCTIONS)
        self.lam = float(lam)
        self.reduction = reduction

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        x = x.detach().requires_grad_(True)
        logits = model(x)
        # the library's mean reduction, so λ = 0 is bit for bit the plain cross-entropy
        ce = F.cross_entropy(logits, y)
        sq = self.unperturbed(input_gradient_sq(logits, x, y, create_graph=True))
        loss = ce + self.lam * REDUCTIONS[self.reduction](sq)
        norm = sq.detach().sqrt().mean()
        return loss, {"ce": ce.item(), "input_gradient_norm": norm.item(), "loss": loss.item()}
