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

Params (``attack.representation`` of a run's attack config, optional): ``eps`` (a list, L∞,
image units), ``steps`` and ``step_size`` (one number, or one per ε as in a sweep),
``random_start`` (default true). Not in the text, chosen by the study: the ε grid and PGD's
steps for Fig. 4. Rows use attack ``representation`` (norm ``linf`` and the ε for
sensitivity; no norm or ε for the dimensionality) so no sanity check reads them as accuracy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from robust.attacks import run_attack
from robust.defenses.rep_matching import embedding_and_head
from robust.errors import ConfigError

ATTACK = "representation"
KEYS = {"eps", "steps", "step_size", "random_start"}
VARIANCE = 0.99  # Table A5: PCA dimensions that explain 99% of the variance


@dataclass(frozen=True)
class RepresentationSettings:
    eps: tuple[float, ...]
    steps: int
    step_size: tuple[float, ...]  # one per ε
    random_start: bool = True


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
    return RepresentationSettings(tuple(float(e) for e in eps), steps, tuple(float(s) for s in sizes), random_start)


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
    return rows
