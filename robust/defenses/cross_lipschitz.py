"""Cross-Lipschitz regularization: Hein & Andriushchenko, "Formal Guarantees on the Robustness
of a Classifier against Adversarial Manipulation", NeurIPS 2017, arXiv 1705.08475; the form
compared in Jakubovitz & Giryes 2018 (arXiv 1803.08680), eq. 6.

Eq. 6: R = Σ_i Σ_{j,k=1..K} ‖∇ₓz_k(x_i) − ∇ₓz_j(x_i)‖², z the logits, over all ordered pairs
(j, k). Loss = mean CE + (λ/N)·R — summed CE + λ·eq. 6, divided by the batch size N as the
jacobian defense's ``eq4``, so the minimiser is the paper's and λ does not depend on N.
Hein & Andriushchenko's own objective also divides the penalty by K², so their λ is K²·λ here
(λ_here = λ_theirs / K²).

No K² loop: with g_k = ∇ₓz_k(x_i) and ḡ = (1/K) Σ_k g_k,
    Σ_{j,k} ‖g_k − g_j‖² = 2K Σ_k ‖g_k‖² − 2‖Σ_k g_k‖² = 2K Σ_k ‖g_k − ḡ‖².
The last (centred) form is used: it is the same number, never negative, and avoids the
cancellation of the two-term form when the rows become nearly equal — which is what this
penalty drives them to (a gradient shared by all classes is not penalised).

Faithful: exact Jacobian rows (K backward passes with ``create_graph=True``, from
``robust.jacobian``), one forward pass for both terms (same dropout mask); dropout stays on
during the step, as for the jacobian defense. Cost: the same K backward passes as the exact
Jacobian regularizer, plus memory for the B×K×D Jacobian; the paper found it impractical at
K = 100 (CIFAR-100, Appendix E).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from robust.defenses.base import KEY, Defense, is_number, register_defense
from robust.errors import ConfigError
from robust.jacobian import jacobian_from_logits


def cross_lipschitz_from_jacobian(jac: torch.Tensor) -> torch.Tensor:
    """Per-example Σ_{j,k} ‖J_k − J_j‖² (B,) of Jacobians ``jac`` (B, K, *input shape)."""
    rows = jac.flatten(2)
    n_classes = rows.shape[1]
    centred = rows - rows.mean(1, keepdim=True)
    return 2 * n_classes * centred.pow(2).sum((1, 2))


@register_defense("cross_lipschitz")
class CrossLipschitzRegularization(Defense):
    """Params: ``lambda`` (→ argument ``lam``, ≥ 0, required), ``adversarial`` (optional)."""

    example_params = {"lambda": 0.01}
    penalizes_originals = True

    def __init__(self, *, lam: float, adversarial: dict | None = None):
        super().__init__(adversarial=adversarial)
        if not is_number(lam) or lam < 0:
            raise ConfigError(f"{KEY}.lambda", f"must be a number >= 0, got {lam!r}")
        self.lam = float(lam)

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        x = x.detach().requires_grad_(True)
        logits = model(x)
        ce = F.cross_entropy(logits, y)
        penalty = self.unperturbed(cross_lipschitz_from_jacobian(jacobian_from_logits(logits, x, create_graph=True)))
        loss = ce + self.lam * penalty.mean()
        return loss, {"ce": ce.item(), "cross_lipschitz": penalty.detach().mean().item(), "loss": loss.item()}
