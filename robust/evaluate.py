"""Robustness evaluation of one trained model: an attack suite → tidy metric rows.

Protocol (as AutoAttack does it): a fixed, seeded subset of the test set; clean accuracy
first; then every attack of the suite on the whole subset, a point counting as robust only
if it is classified correctly both clean and attacked. Every adversarial batch is checked
against its budget (‖δ‖ ≤ ε, x_adv ∈ [0, 1]) before it is counted.

ρ_adv (Jakubovitz & Giryes §4.1; Moosavi-Dezfooli et al.) is the mean over *all* N points of
‖δ_i‖/‖x_i‖ for the minimal perturbation δ_i of a minimal-perturbation attack (DeepFool, C&W,
DDN), in the norm the attack minimises (L2 unless its settings say otherwise); points
misclassified without attack contribute 0 (δ = 0), as in the adversary-critic evaluation code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm.auto import tqdm

from robust.attacks import ATTACKS, MINIMAL_PERTURBATION, check_settings, norm_of, run_attack
from robust.errors import ConfigError
from robust.jacobian import jacobian_frobenius_sq
from robust.params import require_mapping

BUDGET_TOLERANCE = 1e-5
NORM_ORDER = {"linf": float("inf"), "l2": 2.0, "l1": 1.0}


@dataclass(frozen=True)
class AttackSpec:
    """One entry of an attack suite, validated against the attack's signature."""

    name: str
    settings: dict = field(default_factory=dict)

    @property
    def norm(self) -> str:
        return norm_of(self.name, self.settings)

    @property
    def eps(self) -> float | None:
        return self.settings.get("eps")


def parse_suite(suite: object, key: str = "attack.suite") -> list[AttackSpec]:
    """Validate a params attack suite: a non-empty list of ``{name: ..., <setting>: ...}``."""
    if not isinstance(suite, Sequence) or isinstance(suite, str) or not suite:
        raise ConfigError(key, "must be a non-empty list of attacks", ATTACKS.names())
    specs = []
    for index, entry in enumerate(suite):
        entry_key = f"{key}[{index}]"
        entry = require_mapping(entry, entry_key)
        name = entry.pop("name", None)
        check_settings(name, entry, key=entry_key)
        spec = AttackSpec(name, entry)
        if "eps" in entry:
            # ε is in pixel units: at most 1 under L∞; L2/L1 budgets may exceed 1 (e.g. L2 ε = 2 on MNIST)
            high = 1.0 if spec.norm == "linf" else float("inf")
            eps = entry["eps"]
            if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0 <= eps <= high:
                raise ConfigError(f"{entry_key}.eps", f"must be a number in [0, {high:g}] for norm {spec.norm}, "
                                  f"got {eps!r}")
        specs.append(spec)
    return specs


def fixed_subset(n_total: int, n: int | None, seed: int) -> torch.Tensor:
    """Indices of the evaluation subset: the same points for every run of a study."""
    if n is None or n >= n_total:
        return torch.arange(n_total)
    return torch.randperm(n_total, generator=torch.Generator().manual_seed(seed))[:n].sort().values


def _check_budget(spec: AttackSpec, x: torch.Tensor, x_adv: torch.Tensor) -> None:
    if x_adv.min() < 0 or x_adv.max() > 1:
        raise AssertionError(f"attack {spec.name} left the [0, 1] box")
    if spec.eps is not None and spec.name not in MINIMAL_PERTURBATION:
        worst = torch.linalg.vector_norm((x_adv - x).flatten(1), ord=NORM_ORDER[spec.norm], dim=1).max().item()
        if worst > spec.eps + BUDGET_TOLERANCE:
            raise AssertionError(f"attack {spec.name}: ‖δ‖ ({spec.norm}) = {worst:.6f} exceeds ε = {spec.eps}")


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, suite: Sequence[AttackSpec], *,
             batch_size: int, seed: int) -> list[dict]:
    """Metric rows ``{attack, norm, eps, steps, metric, value, n}`` for one model."""
    model.eval()
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    batches = list(zip(x.split(batch_size), y.split(batch_size)))
    clean_correct, jac_norms = [], []
    for xb, yb in tqdm(batches, desc="clean", leave=False):
        xb, yb = xb.to(device), yb.to(device)
        with torch.no_grad():
            clean_correct.append(model(xb).argmax(1) == yb)
        jac_norms.append(jacobian_frobenius_sq(model, xb).sqrt().detach())
    clean_correct = torch.cat(clean_correct)
    n = len(y)
    rows = [_row("clean", "", None, None, "accuracy", clean_correct.float().mean(), n),
            _row("clean", "", None, None, "jacobian_fro", torch.cat(jac_norms).mean(), n)]

    for spec in suite:
        robust, ratios = [], []
        for (xb, yb), correct in zip(tqdm(batches, desc=spec.name, leave=False), clean_correct.split(batch_size)):
            xb, yb = xb.to(device), yb.to(device)
            x_adv = run_attack(spec.name, model, xb, yb, generator=generator, **spec.settings)
            _check_budget(spec, xb, x_adv)
            with torch.no_grad():
                robust.append(correct & (model(x_adv).argmax(1) == yb))
            if spec.name in MINIMAL_PERTURBATION:
                order = NORM_ORDER[spec.norm]
                delta = torch.linalg.vector_norm((x_adv - xb).flatten(1), ord=order, dim=1) * correct
                ratios.append(delta / torch.linalg.vector_norm(xb.flatten(1), ord=order, dim=1).clamp_min(1e-12))
        steps = spec.settings.get("steps")
        rows.append(_row(spec.name, spec.norm, spec.eps, steps, "accuracy", torch.cat(robust).float().mean(), n))
        if ratios:
            rows.append(_row(spec.name, spec.norm, spec.eps, steps, "rho_adv", torch.cat(ratios).mean(), n))
    return rows


def _row(attack: str, norm: str, eps, steps, metric: str, value: torch.Tensor, n: int) -> dict:
    return {"attack": attack, "norm": norm, "eps": float("nan") if eps is None else float(eps),
            "steps": -1 if steps is None else int(steps), "metric": metric, "value": float(value), "n": n}
