"""TRADES: Zhang et al., "Theoretically Principled Trade-off between Robustness and Accuracy",
ICML 2019, arXiv 1901.08573; the baseline of AFD (Bashivan et al. 2021), run there with the
official code (github.com/yaodongyu/TRADES).

Loss = CE(f(x), y) + β·KL(softmax f(x) ‖ softmax f(x')), the KL averaged over the batch
(the official ``(1/B)·KLDivLoss(reduction="sum")``), where x' maximises that KL in the L∞ ball:
PGD from x + 0.001·N(0, I), ``steps`` signed-gradient steps of ``step_size``, each followed by
projection onto the ε-ball and clipping to [0, 1]. Faithful to the official ``trades_loss``:
the attack runs in eval mode (here also with frozen parameters) against the fixed clean
distribution; the loss is taken in the caller's mode (train) with gradients through both
f(x) and f(x') — the clean distribution inside the KL is not detached.

Settings: β (``beta``, 6 in the paper's CIFAR-10 results, 1/λ in its notation), ``eps``,
``steps``, ``step_size`` (official CIFAR-10: 0.031, 10, 0.007; MNIST: 0.3, 40, 0.01), all
required: the study states them.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from robust.attacks.base import clip_box, project_linf
from robust.defenses.base import KEY, Defense, attack_mode, is_number, register_defense
from robust.errors import ConfigError

START_STD = 0.001  # official random start: x + 0.001·N(0, I)


def kl_per_example(logits_clean: torch.Tensor, logits_adv: torch.Tensor) -> torch.Tensor:
    """KL(softmax(clean) ‖ softmax(adv)) per example, (B,)."""
    log_p, log_q = F.log_softmax(logits_clean, dim=1), F.log_softmax(logits_adv, dim=1)
    return (log_p.exp() * (log_p - log_q)).sum(dim=1)


def trades_pgd(model: nn.Module, x: torch.Tensor, *, eps: float, steps: int, step_size: float,
               generator: torch.Generator) -> torch.Tensor:
    """x' in the L∞ ε-ball and [0, 1] that (locally) maximises KL(f(x) ‖ f(x')); detached."""
    if generator is None:
        raise ValueError("trades: the random start needs a seeded torch.Generator, got None")
    with torch.no_grad():
        target = model(x)
    noise = torch.randn(x.shape, generator=generator, device=generator.device, dtype=x.dtype).to(x.device)
    x_adv = x.detach() + START_STD * noise
    for _ in range(steps):
        x_adv = x_adv.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(kl_per_example(target, model(x_adv)).sum(), x_adv)
        x_adv = clip_box(x + project_linf(x_adv.detach() + step_size * grad.sign() - x, eps))
    return x_adv.detach()


def _check(value: object, key: str, *, integer: bool = False) -> None:
    if not is_number(value) or value <= 0 or (integer and not isinstance(value, int)):
        kind = "a positive integer" if integer else "a number > 0"
        raise ConfigError(f"{KEY}.{key}", f"must be {kind}, got {value!r}")


@register_defense("trades")
class Trades(Defense):
    """Params: ``beta`` (≥ 0), ``eps``, ``steps``, ``step_size`` (L∞, image units), ``adversarial`` (optional)."""

    example_params: ClassVar[dict[str, Any]] = {"beta": 6.0, "eps": 0.1, "steps": 2, "step_size": 0.05}
    supports_amp = True  # first-order: the attack differentiates with respect to the input only

    def __init__(self, *, beta: float, eps: float, steps: int, step_size: float, adversarial: dict | None = None):
        super().__init__(adversarial=adversarial)
        if not is_number(beta) or beta < 0:
            raise ConfigError(f"{KEY}.beta", f"must be a number >= 0, got {beta!r}")
        _check(eps, "eps")
        _check(steps, "steps", integer=True)
        _check(step_size, "step_size")
        self.beta, self.eps, self.steps, self.step_size = float(beta), float(eps), steps, float(step_size)

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        with attack_mode(model):
            x_adv = trades_pgd(model, x, eps=self.eps, steps=self.steps, step_size=self.step_size,
                               generator=self.generator)
        logits = model(x)
        ce = F.cross_entropy(logits, y)
        kl = kl_per_example(logits, model(x_adv)).mean()
        loss = ce + self.beta * kl
        return loss, {"ce": ce.item(), "kl": kl.item(), "loss": loss.item()}
