"""Structured gradient regularization (SGR) and gradient-norm regularization (GN).

Roth, Lucchi, Nowozin & Hofmann, "Adversarially Robust Training through Structured Gradient
Regularization", arXiv 1805.08736, eq. 11 and §3.3:

    loss = mean_i CE(x_i, y_i) + λ·Ω,   Ω = 1/(2m) Σ_i g_iᵀ Σ g_i,   g_i = ∇ₓ log p(y_i | x_i),

with g_i by double backpropagation (``create_graph=True``), so Ω trains the parameters. The
sign of g_i does not matter in the quadratic form; g_i is taken as the gradient of the summed
cross-entropy, exact per example when examples do not interact (no BatchNorm in train mode).

``sgr``: Σ is the running second-moment matrix of adversarial perturbations ξ (eq. 14, decay
``beta`` = 0.1: §3.3's footnote gives the value used in all experiments, lost in the seed text; 0.1 is
the ICLR 2019 version's), updated every ``update_every`` steps (§3.3:
"not necessary to update at every training step") from ``covariance_from``:

- ``grad``: the loss gradients g_i of the step (variant "sgr_grad", (a) in §4.1);
- ``sign``: their signs ("sgr_sign", (b));
- an attack mapping ``{name, <settings>}``: x_adv − x of that attack on the current model in
  eval mode with frozen parameters, true labels ("fgsm_sgr" with fgsm, (c); "pgd_sgr" with pgd, (d)).

``covariance``: ``matrix`` (full D×D, eq. 15) or ``function`` (the displacement covariance
function of eq. 16 applied as a convolution; see ``robust.covariance``).

Standardisation (§3.3): Σ is rescaled so that its average diagonal entry equals the average
diagonal entry of the data covariance, which makes λ a noise-to-signal ratio. The data term is
``data_variance`` when given, otherwise the mean per-feature variance of every clean training
batch seen so far (before adversarial mixing), in the [0, 1] pixel units the gradients are
taken in. The text says "of the same order"; equality is the choice here.

``gn``: Σ = I, Ω = 1/(2m) Σ_i ‖g_i‖² (§4.1, "SGR with identity covariance matrix"), without
standardisation, so its λ is not on the noise-to-signal scale of ``sgr``.

Chosen where the text is silent: each perturbation is scaled to a mean square of 1 before its
second moments are taken (otherwise batches with large gradients dominate the average; the
ICLR-2019 version normalises perturbations); labels for the covariance attacks are the true
ones (label leaking, §7.2, concerns examples fed to the classifier, which SGR never does).
The uncentred correction of eq. 12 (reported small) is not implemented. Adversarial training
("pgd", "fgsm") and weight decay ("wdecay") are not this module: the base class's
``adversarial`` mixing and the trainer's ``l2``.
"""

from __future__ import annotations

import types
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from robust.attacks import check_settings, run_attack
from robust.covariance import COVARIANCES, DataVariance, normalize_per_example
from robust.defenses.base import KEY, Defense, attack_mode, is_number, register_defense
from robust.errors import ConfigError

GRADIENT_SOURCES = ("grad", "sign")


def check_lambda(lam: object) -> float:
    if not is_number(lam) or lam < 0:
        raise ConfigError(f"{KEY}.lambda", f"must be a number >= 0, got {lam!r}")
    return float(lam)


def loss_and_input_gradient(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(mean CE, per-example ∇ₓCE_i with its graph, the input leaf) from one forward pass."""
    x = x.detach().requires_grad_(True)
    logits = model(x)
    ce = F.cross_entropy(logits, y)
    # materialize_grads: inputs the logits ignore get a zero gradient, not an error
    (g,) = torch.autograd.grad(F.cross_entropy(logits, y, reduction="sum"), x, create_graph=True,
                               materialize_grads=True)
    return ce, g, x


class GradientQuadraticForm(Defense):
    """Shared loss: mean CE + λ·1/(2m) Σ_i g_iᵀ Σ g_i; subclasses give Σg."""

    def __init__(self, *, lam: float, adversarial: dict | None = None):
        super().__init__(adversarial=adversarial)
        self.lam = check_lambda(lam)

    def covariance_times(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        ce, g, x_leaf = loss_and_input_gradient(model, x, y)
        quadratic = (g * self.covariance_times(model, x_leaf.detach(), y, g)).flatten(1).sum(1)
        omega = quadratic.sum() / (2 * len(x))
        loss = ce + self.lam * omega
        norm = g.detach().flatten(1).norm(dim=1).mean()
        return loss, {"ce": ce.item(), "omega": omega.item(), "input_gradient_norm": norm.item(), "loss": loss.item()}


@register_defense("gn")
class GradientNormRegularization(GradientQuadraticForm):
    """Params: ``lambda`` (→ ``lam``, ≥ 0, required), ``adversarial`` (optional)."""

    example_params: ClassVar[dict[str, Any]] = {"lambda": 0.1}

    def __init__(self, *, lam: float, adversarial: dict | None = None):
        super().__init__(lam=lam, adversarial=adversarial)

    def covariance_times(self, model, x, y, g):
        return g


def check_source(source: object) -> str | Mapping[str, Any]:
    key = f"{KEY}.covariance_from"
    if isinstance(source, str):
        if source not in GRADIENT_SOURCES:
            raise ConfigError(key, f"got {source!r}; or an attack mapping {{name, <settings>}}", GRADIENT_SOURCES)
        return source
    if not isinstance(source, Mapping) or "name" not in source:
        raise ConfigError(key, f"must be grad, sign or an attack mapping {{name, <settings>}}, got {source!r}")
    settings = {k: v for k, v in source.items() if k != "name"}
    check_settings(source["name"], settings, key=key)
    return types.MappingProxyType(dict(source))


@register_defense("sgr")
class StructuredGradientRegularization(GradientQuadraticForm):
    """Params: ``lambda`` (→ ``lam``, ≥ 0, required), ``covariance`` (matrix | function),
    ``covariance_from`` (grad | sign | {name: <attack>, <settings>}), ``beta`` (EMA decay in (0, 1]),
    ``update_every`` (steps, ≥ 1), ``data_variance`` (> 0, or null to estimate), ``adversarial``."""

    example_params: ClassVar[dict[str, Any]] = {"lambda": 0.1}

    def __init__(self, *, lam: float, covariance: str = "function", covariance_from: str | dict = "grad",
                 beta: float = 0.1, update_every: int = 1, data_variance: float | None = None,
                 adversarial: dict | None = None):
        super().__init__(lam=lam, adversarial=adversarial)
        if covariance not in COVARIANCES:
            raise ConfigError(f"{KEY}.covariance", f"got {covariance!r}", COVARIANCES)
        if not is_number(beta) or not 0 < beta <= 1:
            raise ConfigError(f"{KEY}.beta", f"must be a number in (0, 1], got {beta!r}")
        if not isinstance(update_every, int) or isinstance(update_every, bool) or update_every < 1:
            raise ConfigError(f"{KEY}.update_every", f"must be an integer >= 1, got {update_every!r}")
        if data_variance is not None and (not is_number(data_variance) or data_variance <= 0):
            raise ConfigError(f"{KEY}.data_variance", f"must be a number > 0 or null, got {data_variance!r}")
        self.covariance_from = check_source(covariance_from)
        self.beta, self.update_every, self.data_variance = float(beta), update_every, data_variance
        self.covariance = COVARIANCES[covariance](self.beta)
        self.data = DataVariance()
        self.step = 0

    def training_step(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict]:
        if self.data_variance is None:
            self.data.update(x)
        loss, logs = super().training_step(model, x, y)
        self.step += 1
        logs["covariance_scale"] = self.scale()
        return loss, logs

    def perturbations(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        if self.covariance_from == "grad":
            return g.detach()
        if self.covariance_from == "sign":
            return g.detach().sign()
        settings = {k: v for k, v in self.covariance_from.items() if k != "name"}
        with attack_mode(model):
            x_adv = run_attack(self.covariance_from["name"], model, x, y, generator=self.generator, **settings)
        return x_adv - x

    def scale(self) -> float:
        """Factor that gives the running Σ the data covariance's average diagonal."""
        target = self.data_variance if self.data_variance is not None else self.data.value()
        diagonal = float(self.covariance.average_diagonal())
        # all-zero perturbations so far (e.g. a constant model): no structure to regularize with
        return target / diagonal if diagonal > 0 else 0.0

    def covariance_times(self, model, x, y, g):
        if self.step % self.update_every == 0:
            self.covariance.update(normalize_per_example(self.perturbations(model, x, y, g)))
        return self.scale() * self.covariance.apply(g)

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step, "covariance": self.covariance.state_dict(), "data": self.data.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if set(state) != {"step", "covariance", "data"}:
            raise ValueError(f"defense {self.name!r}: expected keys covariance, data, step, got {sorted(state)}")
        self.step = state["step"]
        self.covariance.load_state_dict(state["covariance"])
        self.data.load_state_dict(state["data"])
