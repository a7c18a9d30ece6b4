"""Virtual adversarial training: Miyato, Maeda, Koyama, Nakae & Ishii, "Distributional Smoothing
with Virtual Adversarial Training", ICLR 2016 (arXiv 1507.00677), the VAT baseline of Matyasko &
Chau 2018 (arXiv 1810.12576, §5: "Virtual Adversarial Training (VAT) [16] (ϵ = 2.0)" on MNIST).

Loss = CE(f(x), y) + λ·LDS, with the local distributional smoothness term

    LDS = mean_i KL(p(·|x_i) ‖ p(·|x_i + r_i)),   r_i = ε·g_i/‖g_i‖₂,

where p(·|x) is held fixed (no gradient), and g is found by power iteration: start from a
random unit direction d, then ``power_iterations`` times d ← normalize(∇_r KL(p(·|x) ‖
p(·|x + r))|_{r = ξd}). The norm is the L2 norm of each whole example.

Faithful: the KL direction, ξ-scaled finite-difference power iteration (1 iteration, as in the
paper's experiments), ε in input units, λ (the paper's α) = 1 by default.
Chosen: ξ = 1e-6 (the paper's value; it is read in input units here, where the inputs are
[0, 1] pixels); the direction search runs on the model in eval mode with frozen parameters
(as every attack here); the KL term itself uses the mode the trainer left, so on a network with
BatchNorm its perturbed pass would update the running statistics (the official code's does not;
the studies' VAT networks have none); x + r is not
clipped to [0, 1] (VAT perturbs freely). Randomness only from ``self.generator``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from robust.defenses.base import Defense, attack_mode, register_defense
from robust.defenses.critic import check_int, check_number


# Below this L2 norm an example's squared entries approach float32's underflow, so its norm is
# computed from a rescaled copy (see unit_norm)
RESCALE_BELOW = 1e-15


def unit_norm(t: torch.Tensor) -> torch.Tensor:
    """Each example divided by its L2 norm (an all-zero example stays zero).

    A confident model's KL gradient at r = ξd (ξ = 1e-6) is tiny, and once its entries fall below
    ~1e-19 their squares underflow: the norm comes out 0 or far too small, the "unit" direction has
    ‖d‖ ≫ 1 (2e14 for entries of 1e-25), and x + ε·d throws the LDS to ~1e11: a 20-epoch FC run on
    mnist10k spiked so at epoch 13 and fell to chance accuracy from epoch 18. Such examples are
    first divided by their largest |entry|, as the official VAT code (get_normalized_vector) does for
    every example; the others keep the plain division.
    """
    tiny = torch.finfo(t.dtype).tiny
    norm = torch.linalg.vector_norm(t.flatten(1), dim=1)
    small = norm < RESCALE_BELOW
    if small.any():
        peak = t.flatten(1).abs().amax(dim=1).clamp_min(tiny)
        scale = torch.where(small, peak, torch.ones_like(peak))
        t = t / scale.view(-1, *([1] * (t.dim() - 1)))
        norm = torch.where(small, torch.linalg.vector_norm(t.flatten(1), dim=1), norm)
    return t / norm.clamp_min(tiny).view(-1, *([1] * (t.dim() - 1)))


def kl_from_logits(log_p: torch.Tensor, logits_q: torch.Tensor) -> torch.Tensor:
    """Per-example KL(p ‖ q), p given by its log-probabilities, q by logits."""
    return (log_p.exp() * (log_p - logits_q.log_softmax(dim=1))).sum(dim=1)


def virtual_adversarial_perturbation(model: nn.Module, x: torch.Tensor, *, eps: float, xi: float,
                                     power_iterations: int, generator: torch.Generator) -> torch.Tensor:
    """r_vadv (detached): ε times the power-iteration estimate of the KL's most sensitive direction.

    The model runs in eval mode with frozen parameters; p(·|x) is taken in that same mode, so
    the KL is zero at r = 0 and its gradient at ξd is the Hessian term, not a dropout mismatch.
    """
    x = x.detach()
    noise = torch.randn(x.shape, generator=generator, device=generator.device, dtype=x.dtype)
    d = unit_norm(noise.to(x.device))
    with attack_mode(model), torch.enable_grad():
        with torch.no_grad():
            log_p = model(x).log_softmax(dim=1)
        for _ in range(power_iterations):
            r = (xi * d).requires_grad_(True)
            kl = kl_from_logits(log_p, model(x + r)).sum()
            (grad,) = torch.autograd.grad(kl, r)
            d = unit_norm(grad)
    return eps * d.detach()


@register_defense("vat")
class VirtualAdversarialTraining(Defense):
    """Params: ``eps`` (required, 2.0 on MNIST in the paper), ``lambda`` (→ ``lam``, 1), ``xi`` (1e-6),
    ``power_iterations`` (1), ``adversarial`` (optional)."""

    example_params: ClassVar[dict[str, Any]] = {"eps": 2.0}
    # no bf16 autocast: x + ξd with ξ = 1e-6 rounds back to x in bf16, so the power iteration sees no difference
    supports_amp = False

    def __init__(self, *, eps: float, lam: float = 1.0, xi: float = 1e-6, power_iterations: int = 1,
                 adversarial: dict | None = None):
        super().__init__(adversarial=adversarial)
        self.eps = check_number("eps", eps, strict=True)
        self.lam = check_number("lambda", lam)
        self.xi = check_number("xi", xi, strict=True)
        self.power_iterations = check_int("power_iterations", power_iterations, low=1)

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        if self.generator is None:
            raise ValueError("defense 'vat' draws a random start: set defense.generator to a seeded torch.Generator")
        logits = model(x)
        ce = F.cross_entropy(logits, y)
        log_p = logits.detach().log_softmax(dim=1)
        r = virtual_adversarial_perturbation(model, x, eps=self.eps, xi=self.xi,
                                             power_iterations=self.power_iterations, generator=self.generator)
        lds = kl_from_logits(log_p, model(x + r)).mean()
        loss = ce + self.lam * lds
        return loss, {"ce": ce.item(), "lds": lds.item(), "loss": loss.item()}
