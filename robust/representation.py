"""Representation analyses of AFD (Bashivan et al. 2021, arXiv 2006.04621), as tidy metric rows.

E(x) is the model's representation, the activations before its last linear layer, split off
the way the AFD defense splits it (``embedding_and_head``: ``model.embed`` of the ResNets).

- ``sensitivity`` (Fig. 4 left, §3 "Representation sensitivity"): the normalised change
  ‖E(x) − E(x′)‖₂ / ‖E(x)‖₂ of every evaluated point, with x′ = PGD-L∞(x) at each ε of a
  grid (cross-entropy PGD on the classifier, random start, as the suite's PGD). Fig. 4 plots
  the median ± std over the test set: the rows hold the median (``sensitivity``) and the
  standard deviation (``sensitivity_std``).
- dimensionality (Table A5, §3 "Learning a sparse representation"): ``active_units``, the
  number of feature dimensions that are non-zero for at least one evaluated point, and
  ``pca_dims_99``, the number of principal components of E(x) over the evaluated points that
  explain 99% of its variance; ``feature_dims`` (all dimensions) is stored beside them.

- ``representation_angle`` (Table A7: "the cosine angle between representation perturbations due
  to each attack to those from PGD-Linf", in radians): per point, arccos of the cosine between
  E(x′_a) − E(x) of an attack a and E(x′_ref) − E(x) of the reference attack, averaged over the
  points where both perturbations of E are non-zero (a point a minimal attack leaves unchanged has
  no direction); ``n`` counts them. One row per attack, on that attack's own identity (name, label,
  norm, ε, steps) with this metric, so that a table reads it like any attack's number.

Params (``attack.representation`` of a run's attack config, optional): ``eps`` (a list, L∞,
image units), ``steps`` and ``step_size`` (one number, or one per ε as in a sweep),
``random_start`` (default true); ``angles`` (optional): ``reference`` (one attack, as a suite
entry) and ``attacks`` (a suite). Not in the text, chosen by the study: the ε grid and PGD's
steps for Fig. 4, and the attacks and budgets of Table A7. Sensitivity and dimensionality rows use
attack ``representation`` (norm ``linf`` and the ε for sensitivity; no norm or ε for the
dimensionality) so no sanity check reads them as accuracy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from robust.attacks import run_attack
from robust.defenses.rep_matching import embedding_and_head
from robust.errors import ConfigError
from robust.evaluate import AttackSpec, parse_suite

ATTACK = "representation"
KEYS = {"eps", "steps", "step_size", "random_start", "angles"}
ANGLE_KEYS = {"reference", "attacks"}
VARIANCE = 0.99  # Table A5: PCA dimensions that explain 99% of the variance


@dataclass(frozen=True)
class RepresentationSettings:
    eps: tuple[float, ...]
    steps: int
    step_size: tuple[float, ...]  # one per ε
    random_start: bool = True
    angle_reference: AttackSpec | None = None  # Table A7: the attack whose E-perturbation the others are compared to
    angle_attacks: tuple[AttackSpec, ...] = ()


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def parse_representation(config: object, key: str) -> RepresentationSettings:
    """Validate ``attack.representation``; one ConfigError naming the key at fault."""
    if not isinstance(config, Mapping):
        raise ConfigError(key, f"must be a mapping {{eps, steps, step_size}}, got {config!r}")
    for name in config:
        if name not in KEYS:
            raise ConfigError(f"{key}.{name}", "not a setting of the representation analysis", KEYS)
    for name in ("eps", "steps", "step_size"):
        if name not in config:
            raise ConfigError(f"{key}.{name}", "required by the representation analysis and missing")
    eps = config["eps"]
    if not isinstance(eps, Sequence) or isinstance(eps, str) or not eps:
        raise ConfigError(f"{key}.eps", f"must be a non-empty list of L∞ radii, got {eps!r}")
    if any(not _number(e) or not 0 <= e <= 1 for e in eps) or len(set(eps)) != len(eps):
        raise ConfigError(f"{key}.eps", f"must be distinct numbers in [0, 1] (image units), got {list(eps)!r}")
    steps = config["steps"]
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ConfigError(f"{key}.steps", f"must be a positive integer, got {steps!r}")
    step_size = config["step_size"]
    listed = isinstance(step_size, Sequence) and not isinstance(step_size, str)
    sizes = list(step_size) if listed else [step_size] * len(eps)
    if len(sizes) != len(eps) or any(not _number(s) or s <= 0 for s in sizes):
        raise ConfigError(f"{key}.step_size", f"must be a number > 0 or one per ε ({len(eps)}), got {step_size!r}")
    random_start = config.get("random_start", True)
    if not isinstance(random_start, bool):
        raise ConfigError(f"{key}.random_start", f"must be true or false, got {random_start!r}")
    reference, attacks = _angles(config.get("angles"), f"{key}.angles")
    return RepresentationSettings(tuple(float(e) for e in eps), steps, tuple(float(s) for s in sizes), random_start,
                                  reference, attacks)


def _angles(config: object, key: str) -> tuple[AttackSpec | None, tuple[AttackSpec, ...]]:
    if config is None:
        return None, ()
    if not isinstance(config, Mapping) or set(config) != ANGLE_KEYS:
        raise ConfigError(key, f"must be a mapping {{reference: <attack>, attacks: [<attack>, ...]}}, got {config!r}")
    reference = parse_suite([config["reference"]], f"{key}.reference", subsets=False)
    if len(reference) != 1:
        raise ConfigError(f"{key}.reference", "must be one attack at one ε, not a sweep")
    attacks = parse_suite(config["attacks"], f"{key}.attacks", subsets=False)
    if any(spec.budgets for spec in (*reference, *attacks)):
        raise ConfigError(key, "budgets mean nothing here: each attack's own x′ is compared")
    return reference[0], tuple(attacks)


def check_splittable(model: nn.Module, key: str) -> None:
    """ConfigError naming ``key`` when the model has no E/Dc split to analyse."""
    try:
        embedding_and_head(model)
    except TypeError as error:
        raise ConfigError(key, f"needs a model split into E and a linear head: {error}") from None


def features(model: nn.Module, x: torch.Tensor, *, batch_size: int) -> torch.Tensor:
    """E(x) of every point (on CPU), in batches on the model's device."""
    embed, _ = embedding_and_head(model)
    device = next(model.parameters()).device
    with torch.no_grad():
        return torch.cat([embed(xb.to(device)).flatten(1).cpu() for xb in x.split(batch_size)])


def normalized_change(clean: torch.Tensor, perturbed: torch.Tensor) -> torch.Tensor:
    """‖E(x) − E(x′)‖₂ / ‖E(x)‖₂ per point (rows of two feature matrices)."""
    return (clean - perturbed).norm(dim=1) / clean.norm(dim=1).clamp_min(1e-12)


def sensitivity(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, steps: int, step_size: float,
                batch_size: int, generator: torch.Generator, random_start: bool = True) -> torch.Tensor:
    """Normalised representation change of every point under PGD-L∞ at ``eps`` (on CPU)."""
    embed, _ = embedding_and_head(model)
    device = next(model.parameters()).device
    values = []
    for xb, yb in zip(x.split(batch_size), y.split(batch_size)):
        xb, yb = xb.to(device), yb.to(device)
        x_adv = run_attack("pgd", model, xb, yb, generator=generator, eps=eps, steps=steps, step_size=step_size,
                           random_start=random_start)
        with torch.no_grad():
            values.append(normalized_change(embed(xb).flatten(1), embed(x_adv).flatten(1)).cpu())
    return torch.cat(values)


def perturbation_angles(clean: torch.Tensor, reference: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """arccos of the cosine between other − clean and reference − clean, for the rows where both are non-zero."""
    a, b = other - clean, reference - clean
    norms = a.norm(dim=1) * b.norm(dim=1)
    defined = norms > 0
    cosine = (a[defined] * b[defined]).sum(dim=1) / norms[defined]
    return torch.arccos(cosine.clamp(-1.0, 1.0))


def _perturbed_features(model: nn.Module, x: torch.Tensor, y: torch.Tensor, spec: AttackSpec, *, batch_size: int,
                        generator: torch.Generator) -> torch.Tensor:
    embed, _ = embedding_and_head(model)
    device = next(model.parameters()).device
    values = []
    for xb, yb in zip(x.split(batch_size), y.split(batch_size)):
        x_adv = run_attack(spec.name, model, xb.to(device), yb.to(device), generator=generator, **spec.settings)
        with torch.no_grad():
            values.append(embed(x_adv).flatten(1).cpu())
    return torch.cat(values)


def angle_rows(model: nn.Module, x: torch.Tensor, y: torch.Tensor, h: torch.Tensor, settings: RepresentationSettings,
               *, batch_size: int, generator: torch.Generator) -> list[dict]:
    """Table A7: the mean angle (radians) between each attack's and the reference's perturbation of E."""
    if settings.angle_reference is None:
        return []
    reference = _perturbed_features(model, x, y, settings.angle_reference, batch_size=batch_size, generator=generator)
    rows = []
    for spec in settings.angle_attacks:
        angles = perturbation_angles(h, reference, _perturbed_features(model, x, y, spec, batch_size=batch_size,
                                                                       generator=generator))
        value = angles.mean() if len(angles) else torch.tensor(float("nan"))
        rows.append({"attack": spec.name, "label": spec.label, "norm": spec.norm,
                     "eps": float("nan") if spec.eps is None else float(spec.eps),
                     "steps": -1 if spec.steps is None else int(spec.steps), "metric": "representation_angle",
                     "value": float(value), "n": len(angles)})
    return rows


def active_units(h: torch.Tensor, atol: float = 0.0) -> int:
    """Feature dimensions that are non-zero (|value| > ``atol``) for at least one point."""
    return int((h.abs() > atol).any(dim=0).sum())


def pca_dims(h: torch.Tensor, variance: float = VARIANCE) -> int:
    """Fewest principal components of the points ``h`` (N × d) that explain ``variance`` of their variance."""
    centered = h.double() - h.double().mean(dim=0)
    explained = torch.linalg.svdvals(centered) ** 2
    total = explained.sum()
    if total <= 0:
        return 0
    cumulative = explained.cumsum(0) / total
    # round-off may leave the full sum a hair below 1
    return min(int((cumulative < variance - 1e-12).sum()) + 1, len(explained))


def _row(metric: str, value: float, n: int, *, eps: float | None = None, steps: int | None = None) -> dict:
    return {"attack": ATTACK, "label": "", "norm": "" if eps is None else "linf",
            "eps": float("nan") if eps is None else float(eps), "steps": -1 if steps is None else int(steps),
            "metric": metric, "value": float(value), "n": n}


def representation_rows(model: nn.Module, x: torch.Tensor, y: torch.Tensor, settings: RepresentationSettings, *,
                        batch_size: int, seed: int) -> list[dict]:
    """Dimensionality of E over the points and its sensitivity at every ε, as tidy rows."""
    model.eval()
    device = next(model.parameters()).device
    # its own generator: adding the analysis leaves every attack of the suite as it was
    generator = torch.Generator(device=device).manual_seed(seed)
    h = features(model, x, batch_size=batch_size)
    n = len(y)
    rows = [_row("feature_dims", h.shape[1], n), _row("active_units", active_units(h), n),
            _row("pca_dims_99", pca_dims(h), n)]
    for eps, step_size in zip(settings.eps, settings.step_size):
        change = sensitivity(model, x, y, eps=eps, steps=settings.steps, step_size=step_size, batch_size=batch_size,
                             generator=generator, random_start=settings.random_start)
        spread = change.std() if n > 1 else torch.tensor(float("nan"))
        rows += [_row("sensitivity", change.median(), n, eps=eps, steps=settings.steps),
                 _row("sensitivity_std", spread, n, eps=eps, steps=settings.steps)]
    return rows + angle_rows(model, x, y, h, settings, batch_size=batch_size, generator=generator)
