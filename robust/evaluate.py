"""Robustness evaluation of one trained model: an attack suite → tidy metric rows.

Protocol (as AutoAttack does it): a fixed, seeded subset of the test set; clean accuracy
first; then every attack of the suite on the whole subset, a point counting as robust only
if it is classified correctly both clean and attacked. Every adversarial batch is checked
against its budget (‖δ‖ ≤ ε, x_adv ∈ [0, 1]) before it is counted.

Metrics per attack (and per ε of a sweep):

- ``accuracy`` — robust accuracy over all N points;
- ``success_rate`` — the fraction of clean-correct points whose prediction the attack flips;
- ``mean_norm`` / ``median_norm`` — ‖δ‖ in the attack's norm over the flipped points (NaN
  when none flipped);
- ``jacobian_fro`` / ``jacobian_fro_softmax`` (clean inputs, and the examples of minimal-perturbation
  attacks) — the mean over all N points of ‖J‖_F of the logits / of the softmax outputs
  (Jakubovitz & Giryes Table 1; ``robust.jacobian_norms``);
- ``alignment`` (clean inputs only) — the mean over all N points of the absolute cosine between
  x and the input gradient of the predicted class's logit (Etmann et al. 2019; ``robust.saliency``),
  read off the clean Jacobian: one forward pass per clean batch serves predictions, ‖J‖_F and
  alignment (``clean_batch``). Not written for a network invariant to the image's scale
  (``robust.saliency.scale_invariant``), whose input gradient is orthogonal to x by construction;
- ``rho_adv`` (minimal-perturbation attacks only; Jakubovitz & Giryes §4.1, Moosavi-Dezfooli
  et al.) — the mean over *all* N points of ‖δ_i‖/‖x_i‖ for the attack's minimal δ_i, in the
  norm it minimises; points misclassified without attack contribute 0 (δ = 0), as in the
  adversary-critic evaluation code, and so do points the attack fails to flip (it returns x);
- ``rho_adv_converged`` (the same attacks) — ρ_adv without the points the attack failed to flip,
  the mean over the others: the adversary-critic evaluation filters C&W's non-converged samples
  (its ``test_carlini.py``), which matters for an attack that may stop short of the boundary;
- ``auc`` (once per sweep, i.e. a suite entry whose ``eps`` is a list) — the trapezoidal area
  under accuracy-vs-ε over the grid, divided by the grid's width so that a model accurate at
  every ε scores 1 (AFD Table 2: "normalized to have a maximum allowable value of 1").

A minimal-perturbation attack (no ε of its own) may carry ``budgets: [ε, ...]``: its δ is cut to
each ε-ball of its norm (L2: rescaled, L∞: clamped; Foolbox 3's reading of a minimisation attack
at given epsilons, which AFD's Table 2 used for DDN, DeepFool and C&W) and the model re-evaluated
there, giving ``accuracy`` rows at each ε and an ``auc`` over them from one run of the attack.

An entry may carry a ``label`` (e.g. ``lrc-decay8``): two entries of one attack that differ
only in settings other than norm, ε and steps must be told apart by one.

An entry may carry ``examples: n``: that attack runs on a seeded subset of n of the evaluated
points (AFD Table A3 ran AutoAttack, Boundary and B&B "on 100 random samples"), the same n
points for every entry with that n; its rows' ``n`` says how many points they cover.

A suite entry ``{name: pgd, eps: [0.1, 0.2, 0.3], step_size: [0.01, 0.02, 0.03], steps: 40}``
is a sweep: one attack per ε, and every other setting given as a list of the same length is
taken element by element (step sizes usually scale with ε).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from itertools import pairwise

import torch
from torch import nn
from tqdm.auto import tqdm

from robust.attacks import (
    ATTACKS,
    MINIMAL_PERTURBATION,
    check_settings,
    norm_of,
    run_attack,
)
from robust.attacks.base import flat_norm, project_l2, project_linf
from robust.errors import ConfigError, MissingExtra
from robust.jacobian_norms import jacobian_norms, logits_and_jacobian, norms_from_jacobian
from robust.params import require_mapping
from robust.saliency import alignment_from_jacobian, scale_invariant

log = logging.getLogger(__name__)
# float32 rounding of a norm grows with its size (an L1 norm of 50 over 784 pixels is off by ~4e-5),
# so the budget check allows a relative slack
BUDGET_TOLERANCE = 1e-5
NORM_ORDER = {"linf": float("inf"), "l2": 2.0, "l1": 1.0}
BALL_PROJECTIONS = {"l2": project_l2, "linf": project_linf}


@dataclass(frozen=True)
class AttackSpec:
    """One attack of a suite at one ε, validated against the attack's signature.

    ``sweep`` is the index of the suite entry a swept ε came from (None for a single ε): the
    attacks sharing it form one accuracy-vs-ε curve.
    """

    name: str
    settings: dict = field(default_factory=dict)
    sweep: int | None = None
    label: str = ""  # tells apart entries of one attack that differ in other settings than norm/ε/steps
    budgets: tuple[float, ...] = ()  # minimal-perturbation attacks: the ε-balls δ is also cut to
    examples: int | None = None  # attack only this many of the evaluated points (a seeded subset of them)

    @property
    def norm(self) -> str:
        return norm_of(self.name, self.settings)

    @property
    def eps(self) -> float | None:
        return self.settings.get("eps")

    @property
    def steps(self) -> int | None:
        return self.settings.get("steps")

    @property
    def identity(self) -> tuple:
        """What tells this attack's result rows apart from the others of a run."""
        return self.name, self.label, self.norm, self.eps, self.steps


def parse_suite(suite: object, key: str = "attack.suite", *, subsets: bool = True) -> list[AttackSpec]:
    """Validate a params attack suite: a non-empty list of ``{name: ..., <setting>: ...}``; ε lists sweep.

    ``subsets=False`` rejects ``examples`` where an attack must cover every point (transfer examples).
    """
    if not isinstance(suite, Sequence) or isinstance(suite, str) or not suite:
        raise ConfigError(key, "must be a non-empty list of attacks", ATTACKS.names())
    specs = []
    for index, entry in enumerate(suite):
        entry_key = f"{key}[{index}]"
        entry = require_mapping(entry, entry_key)
        name = entry.pop("name", None)
        label = entry.pop("label", "")
        budgets = entry.pop("budgets", None)
        examples = _check_examples(entry.pop("examples", None), f"{entry_key}.examples", subsets)
        if not isinstance(label, str):
            raise ConfigError(f"{entry_key}.label", f"must be a string, got {label!r}")
        check_settings(name, entry, key=entry_key)
        if budgets is not None:
            budgets = _check_budgets(budgets, name, norm_of(name, entry), f"{entry_key}.budgets")
        for settings, sweep in _expand_sweep(entry, entry_key, index):
            spec = AttackSpec(name, settings, sweep, label, budgets or (), examples)
            if "eps" in settings:
                _check_eps(settings["eps"], spec.norm, f"{entry_key}.eps")
            if any(other.identity == spec.identity for other in specs):
                raise ConfigError(f"{entry_key}.label", f"another {name} entry has the same norm, ε and steps: "
                                  "give one of them a distinct label")
            specs.append(spec)
    return specs


def _expand_sweep(entry: dict, key: str, index: int) -> list[tuple[dict, int | None]]:
    lists = {name: value for name, value in entry.items() if isinstance(value, (list, tuple))}
    if not lists:
        return [(entry, None)]
    grid = lists.get("eps")
    if not grid:
        raise ConfigError(f"{key}.{next(iter(lists))}", "a list of values needs a non-empty eps list to sweep over")
    for name, values in lists.items():
        if len(values) != len(grid):
            raise ConfigError(f"{key}.{name}", f"has {len(values)} values but eps has {len(grid)}")
    if len(set(grid)) != len(grid):
        raise ConfigError(f"{key}.eps", f"a sweep's ε values must be distinct, got {list(grid)}")
    return [({**entry, **{name: values[i] for name, values in lists.items()}}, index) for i in range(len(grid))]


def _check_examples(examples: object, key: str, allowed: bool) -> int | None:
    if examples is None:
        return None
    if not allowed:
        raise ConfigError(key, "these attacks run on every evaluated point: remove examples")
    if isinstance(examples, bool) or not isinstance(examples, int) or examples < 1:
        raise ConfigError(key, f"must be a positive number of test points, got {examples!r}")
    return examples


def _check_budgets(budgets: object, name: str, norm: str, key: str) -> tuple[float, ...]:
    if name not in MINIMAL_PERTURBATION:
        raise ConfigError(key, f"only minimal-perturbation attacks take budgets ({name} has an ε: sweep "
                          "its eps list instead)", sorted(MINIMAL_PERTURBATION))
    if norm not in BALL_PROJECTIONS:
        raise ConfigError(key, f"budgets are cut to L2 or L∞ balls, and {name} minimises {norm}")
    if not isinstance(budgets, (list, tuple)) or not budgets:
        raise ConfigError(key, f"must be a non-empty list of ε values, got {budgets!r}")
    for value in budgets:
        _check_eps(value, norm, key)
    if len(set(budgets)) != len(budgets):
        raise ConfigError(key, f"the ε values must be distinct, got {list(budgets)}")
    return tuple(float(value) for value in budgets)


def _check_eps(eps: object, norm: str, key: str) -> None:
    # ε is in pixel units: at most 1 under L∞; L2/L1 budgets may exceed 1 (e.g. L2 ε = 2 on MNIST)
    high = 1.0 if norm == "linf" else float("inf")
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0 <= eps <= high:
        raise ConfigError(key, f"must be a number in [0, {high:g}] for norm {norm}, got {eps!r}")


def fixed_subset(n_total: int, n: int | None, seed: int) -> torch.Tensor:
    """Indices of the evaluation subset: the same points for every run of a study."""
    if n is None or n >= n_total:
        return torch.arange(n_total)
    return torch.randperm(n_total, generator=torch.Generator().manual_seed(seed))[:n].sort().values


@dataclass
class Outcome:
    """What one attack did to every evaluated point (CPU tensors, one entry per point)."""

    spec: AttackSpec
    robust: torch.Tensor  # correct both clean and attacked
    flipped: torch.Tensor  # correct clean, wrong attacked
    norms: torch.Tensor  # ‖x_adv − x‖ in the attack's norm
    x_adv: torch.Tensor | None = None  # kept only when asked for (transfer attacks)
    # per-point ‖J‖_F at x_adv by kind (minimal-perturbation attacks only: Jakubovitz Table 1)
    jacobian: dict[str, torch.Tensor] = field(default_factory=dict)
    # minimal-perturbation attacks with budgets: ε → correct both clean and at x + δ cut to the ε-ball
    robust_within: dict[float, torch.Tensor] = field(default_factory=dict)


def _sizes(spec: AttackSpec, t: torch.Tensor) -> torch.Tensor:
    """‖t_i‖ of every example in the attack's norm."""
    return flat_norm(t, NORM_ORDER[spec.norm])


def _check_budget(spec: AttackSpec, x: torch.Tensor, x_adv: torch.Tensor) -> None:
    if x_adv.min() < 0 or x_adv.max() > 1:
        raise AssertionError(f"attack {spec.name} left the [0, 1] box")
    if spec.eps is not None and spec.name not in MINIMAL_PERTURBATION:
        worst = _sizes(spec, x_adv - x).max().item()
        if _over_budget(worst, spec.eps):
            raise AssertionError(f"attack {spec.name}: ‖δ‖ ({spec.norm}) = {worst:.6f} exceeds ε = {spec.eps}")


def _over_budget(size: float, eps: float) -> bool:
    return size > eps + BUDGET_TOLERANCE * max(1.0, eps)


def _batches(x: torch.Tensor, y: torch.Tensor, batch_size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return list(zip(x.split(batch_size), y.split(batch_size)))


def predictions(model: nn.Module, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    """The model's predicted classes for ``x`` (on CPU), in batches on the model's device."""
    device = next(model.parameters()).device
    with torch.no_grad():
        return torch.cat([model(xb.to(device)).argmax(1).cpu() for xb in x.split(batch_size)])


def attack_points(model: nn.Module, x: torch.Tensor, y: torch.Tensor, spec: AttackSpec, correct: torch.Tensor, *,
                  batch_size: int, generator: torch.Generator, keep: bool = False) -> Outcome:
    """Run one attack over all points in batches and record what it did to each."""
    device = next(model.parameters()).device
    robust, norms, kept, jacobians = [], [], [], []
    within = {eps: [] for eps in spec.budgets}
    for xb, yb in tqdm(_batches(x, y, batch_size), desc=spec.name, leave=False):
        xb, yb = xb.to(device), yb.to(device)
        x_adv = run_attack(spec.name, model, xb, yb, generator=generator, **spec.settings)
        _check_budget(spec, xb, x_adv)
        with torch.no_grad():
            robust.append((model(x_adv).argmax(1) == yb).cpu())
            for eps, kept_robust in within.items():
                kept_robust.append((model(cut_to_budget(spec, xb, x_adv, eps)).argmax(1) == yb).cpu())
        norms.append(_sizes(spec, x_adv - xb).cpu())
        if keep:
            kept.append(x_adv.cpu())
        if spec.name in MINIMAL_PERTURBATION:
            jacobians.append(jacobian_norms(model, x_adv))
    robust = correct & torch.cat(robust)
    return Outcome(spec, robust, correct & ~robust, torch.cat(norms), torch.cat(kept) if keep else None,
                   _cat_by_kind(jacobians), {eps: correct & torch.cat(values) for eps, values in within.items()})


def cut_to_budget(spec: AttackSpec, x: torch.Tensor, x_adv: torch.Tensor, eps: float) -> torch.Tensor:
    """x + δ cut to the ε-ball of the attack's norm (inside the box: it lies between x and x_adv)."""
    x_cut = x + BALL_PROJECTIONS[spec.norm](x_adv - x, eps)
    worst = _sizes(spec, x_cut - x).max().item()
    if _over_budget(worst, eps):
        raise AssertionError(f"attack {spec.name}: δ cut to ε = {eps} has ‖δ‖ ({spec.norm}) = {worst:.6f}")
    return x_cut


def _cat_by_kind(batches: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """One tensor per kind from per-batch {kind: values} dicts (empty when there are no batches)."""
    return {kind: torch.cat([batch[kind] for batch in batches]) for kind in (batches[0] if batches else ())}


def outcome_rows(outcome: Outcome, x: torch.Tensor, correct: torch.Tensor) -> list[dict]:
    spec, n = outcome.spec, len(correct)
    rows = [_row(spec, "accuracy", outcome.robust.float().mean(), n),
            _row(spec, "success_rate", outcome.flipped.sum() / correct.sum().clamp_min(1), n)]
    fooled = outcome.norms[outcome.flipped]
    nan = torch.tensor(float("nan"))
    rows += [_row(spec, "mean_norm", fooled.mean() if len(fooled) else nan, n),
             _row(spec, "median_norm", fooled.median() if len(fooled) else nan, n)]
    if spec.name in MINIMAL_PERTURBATION:
        relative = outcome.norms * correct / _sizes(spec, x).clamp_min(1e-12)
        converged = ~correct | outcome.flipped
        rows += [_row(spec, "rho_adv", relative.mean(), n),
                 _row(spec, "rho_adv_converged", relative[converged].mean() if converged.any() else nan, n)]
    rows += [_row(spec, kind, values.mean(), n) for kind, values in outcome.jacobian.items()]
    return rows + budget_rows(outcome)


def budget_rows(outcome: Outcome) -> list[dict]:
    """Accuracy at each budget of a minimal-perturbation attack, and the AUC over them."""
    if not outcome.robust_within:
        return []
    spec, n = outcome.spec, len(outcome.robust)
    accuracy = {eps: robust.float().mean() for eps, robust in outcome.robust_within.items()}
    rows = [_row(replace(spec, settings={**spec.settings, "eps": eps}), "accuracy", value, n)
            for eps, value in accuracy.items()]
    if len(accuracy) > 1:
        rows.append(_row(spec, "auc", torch.tensor(sweep_auc(list(accuracy), [a.item() for a in accuracy.values()])),
                         n))
    return rows


def sweep_auc(eps: Sequence[float], accuracy: Sequence[float]) -> float:
    """Area under accuracy-vs-ε (trapezoids over the sorted grid) divided by the grid's width."""
    pairs = sorted(zip(eps, accuracy))
    width = pairs[-1][0] - pairs[0][0]
    if width <= 0:
        raise ValueError("an AUC needs at least two distinct ε values")
    area = sum((e1 - e0) * (a0 + a1) / 2 for (e0, a0), (e1, a1) in pairwise(pairs))
    return area / width


def auc_rows(outcomes: Sequence[Outcome]) -> list[dict]:
    rows = []
    for sweep in sorted({o.spec.sweep for o in outcomes if o.spec.sweep is not None}):
        members = [o for o in outcomes if o.spec.sweep == sweep]
        if len(members) < 2:
            continue
        value = sweep_auc([o.spec.eps for o in members], [o.robust.float().mean().item() for o in members])
        first = members[0].spec
        spec = AttackSpec(first.name, {k: v for k, v in first.settings.items() if k != "eps"}, sweep, first.label)
        rows.append(_row(spec, "auc", torch.tensor(value), len(members[0].robust)))
    return rows


def clean_batch(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Predicted classes and per-point clean metrics {kind: values} of one batch, as CPU tensors.

    The saliency map of the alignment is the predicted class's row of the logits Jacobian, and
    the predictions are the argmax of the logits that Jacobian was built on: one forward pass
    (plus the Jacobian's K backward passes) serves all three instead of one pass for each.
    """
    logits, jacobian = logits_and_jacobian(model, x)
    predicted = logits.argmax(1)
    metrics = norms_from_jacobian(logits, jacobian)
    if not scale_invariant(model):
        metrics["alignment"] = alignment_from_jacobian(jacobian, x, predicted).cpu()
    return predicted.cpu(), metrics


@dataclass
class Evaluation:
    rows: list[dict]  # {attack, norm, eps, steps, metric, value, n}
    outcomes: list[Outcome]  # one per attack that ran
    correct: torch.Tensor  # clean correctness of every point


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, suite: Sequence[AttackSpec], *,
             batch_size: int, seed: int, keep: Sequence[AttackSpec] = ()) -> Evaluation:
    """Metric rows for one model under a suite, with each attack's outcome.

    Attacks that need an optional dependency which is not installed are skipped with a
    one-line warning; ``keep`` names the specs whose adversarial examples are returned.
    """
    model.eval()
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    clean_correct, metrics = [], []
    for xb, yb in tqdm(_batches(x, y, batch_size), desc="clean", leave=False):
        predicted, batch_metrics = clean_batch(model, xb.to(device))
        clean_correct.append(predicted == yb.cpu())
        metrics.append(batch_metrics)
    correct = torch.cat(clean_correct)
    clean = AttackSpec("clean")
    rows = [_row(clean, "accuracy", correct.float().mean(), len(y)),
            *(_row(clean, kind, values.mean(), len(y)) for kind, values in _cat_by_kind(metrics).items())]
    outcomes = []
    for spec in suite:
        if spec.examples is not None and spec in keep:
            raise ConfigError("attack.transfer", f"{spec.name} has examples: {spec.examples}, but transfer "
                              "examples must cover every evaluated point: remove examples")
        points = slice(None) if spec.examples is None else fixed_subset(len(y), spec.examples, seed)
        try:
            outcome = attack_points(model, x[points], y[points], spec, correct[points], batch_size=batch_size,
                                    generator=generator, keep=spec in keep)
        except MissingExtra as missing:
            log.warning("skipping %s", missing)
            continue
        outcomes.append(outcome)
        rows += outcome_rows(outcome, x[points], correct[points])
    return Evaluation(rows + auc_rows(outcomes), outcomes, correct)


def _row(spec: AttackSpec, metric: str, value: torch.Tensor, n: int) -> dict:
    return {"attack": spec.name, "label": spec.label, "norm": "" if spec.name == "clean" else spec.norm,
            "eps": float("nan") if spec.eps is None else float(spec.eps),
            "steps": -1 if spec.steps is None else int(spec.steps), "metric": metric, "value": float(value), "n": n}
