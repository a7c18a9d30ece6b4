"""Gradient-masking and broken-attack checks, computed from a run's own metric rows.

Each check is stored as a row beside the numbers it questions: metric ``check_<name>``,
value 1.0 when it holds and 0.0 when it is violated, on the attack/ε it concerns. The tables
mark cells of a run with a violated check and ``robust audit`` lists them. The checks follow
Carlini et al., "On Evaluating Adversarial Robustness" (arXiv 1902.06705, §5) and AutoAttack's
own warnings (Croce & Hein 2020):

- ``iterative_le_single_step`` — an iterative attack (PGD, MIM) is at least as strong as the
  single-step attack of its norm (FGSM for L∞, FGM for L2) at the same ε;
- ``autoattack_le_pgd`` — AutoAttack is at least as strong as PGD at the same norm and ε;
- ``pgd_le_gradient_free`` — PGD is at least as strong as the Square attack, which reads no
  gradients, at the same norm and ε; stored on the PGD row, whose number it questions;
- ``large_eps_reaches_zero`` — PGD at a large L∞ ε (default 0.5: any image can be moved half
  way to any other) leaves (almost) no point correct; if it does not, gradients are not
  guiding the attack;
- ``transfer_ge_whitebox`` (written by the transfer stage) — adversarial examples crafted on
  another model are no stronger than the target's own white-box attack.

Every comparison allows one example of slack (1/n): attacks of equal strength differ by
single points through their randomness. Attacks are compared only on the same points: an attack
run on a subset (``examples``) against others of the same subset size.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd
import torch
from torch import nn

from robust.evaluate import AttackSpec, Evaluation, attack_points, outcome_rows
from robust.params import check_keys, require_number

SINGLE_STEP = {"linf": "fgsm", "l2": "fgm"}
ITERATIVE = ("pgd", "mim")
RUN_WIDE = {"check_large_eps_reaches_zero"}  # a failure here makes every attack number of the run suspect
LARGE_EPS_DEFAULTS = {"large_eps": 0.5, "steps": 20, "max_accuracy": 0.05}
LARGE_EPS_LABEL = "large-eps-check"


def large_eps_settings(config: Mapping | None, key: str) -> tuple[dict, float]:
    """PGD settings of the large-ε check and the accuracy it must not exceed, from ``attack.sanity``."""
    config = dict(config or {})
    check_keys(config, key, set(LARGE_EPS_DEFAULTS))
    values = {**LARGE_EPS_DEFAULTS, **config}
    eps = float(require_number(values["large_eps"], f"{key}.large_eps", low=0, high=1))
    steps = int(require_number(values["steps"], f"{key}.steps", low=1, integer=True))
    limit = float(require_number(values["max_accuracy"], f"{key}.max_accuracy", low=0, high=1))
    # Madry et al.'s step rule: 2.5·ε/steps lets the iterate cross the whole ball
    return {"eps": eps, "steps": steps, "step_size": 2.5 * eps / steps, "random_start": True}, limit


def check_row(attack: str, norm: str, eps: float, steps: int, name: str, holds: bool, n: int,
              label: str = "") -> dict:
    return {"attack": attack, "label": label, "norm": norm, "eps": eps, "steps": steps, "metric": f"check_{name}",
            "value": 1.0 if holds else 0.0, "n": n}


def _same_points(rows: Sequence[dict], attack: str, like: dict) -> list[dict]:
    """``attack``'s accuracy rows at ``like``'s norm and ε on the same points.

    Rows over the same number of points cover the same points (``examples`` subsets are seeded).
    """
    return [r for r in rows if r["metric"] == "accuracy" and r["attack"] == attack and r["norm"] == like["norm"]
            and r["eps"] == like["eps"] and r["n"] == like["n"]]


def _accuracies(rows: Sequence[dict], attack: str, like: dict) -> list[float]:
    return [r["value"] for r in _same_points(rows, attack, like)]


def suite_checks(rows: Sequence[dict]) -> list[dict]:
    """The check rows that compare the attacks of one run's suite with each other."""
    checks = []
    for row in rows:
        if row["metric"] != "accuracy":
            continue
        slack = 1.0 / row["n"]
        if row["attack"] in ITERATIVE and row["norm"] in SINGLE_STEP:
            single = _accuracies(rows, SINGLE_STEP[row["norm"]], row)
            if single:
                checks.append(check_row(row["attack"], row["norm"], row["eps"], row["steps"],
                                        "iterative_le_single_step", row["value"] <= min(single) + slack, row["n"],
                                        row["label"]))
        if row["attack"] == "autoattack":
            pgd = _accuracies(rows, "pgd", row)
            if pgd:
                checks.append(check_row("autoattack", row["norm"], row["eps"], row["steps"], "autoattack_le_pgd",
                                        row["value"] <= min(pgd) + slack, row["n"], row["label"]))
        if row["attack"] == "square":
            checks += [check_row("pgd", pgd["norm"], pgd["eps"], pgd["steps"], "pgd_le_gradient_free",
                                 pgd["value"] <= row["value"] + slack, pgd["n"], pgd["label"])
                       for pgd in _same_points(rows, "pgd", row)]
    return checks


def large_eps_check(model: nn.Module, x: torch.Tensor, y: torch.Tensor, evaluation: Evaluation, settings: dict,
                    max_accuracy: float, *, batch_size: int, seed: int) -> list[dict]:
    """The check row of PGD at the large ε, and its accuracy row unless the suite already ran that PGD.

    The check's own PGD carries the label ``LARGE_EPS_LABEL``: its step rule is the check's, not the
    suite's, so its accuracy must not join the suite's PGD curve of the same step count.
    """
    outcome = next((o for o in evaluation.outcomes if o.spec.name == "pgd" and o.spec.settings == settings), None)
    ran_by_suite = outcome is not None
    if not ran_by_suite:
        generator = torch.Generator(device=next(model.parameters()).device).manual_seed(seed + 1)
        outcome = attack_points(model, x, y, AttackSpec("pgd", settings, label=LARGE_EPS_LABEL),
                                evaluation.correct, batch_size=batch_size, generator=generator)
    accuracy = next(r for r in outcome_rows(outcome, x, evaluation.correct) if r["metric"] == "accuracy")
    spec = outcome.spec
    check = check_row("pgd", "linf", spec.eps, spec.steps, "large_eps_reaches_zero",
                      accuracy["value"] <= max_accuracy, accuracy["n"], spec.label)
    return [check] if ran_by_suite else [accuracy, check]


def violations(results: pd.DataFrame) -> pd.DataFrame:
    """The violated check rows of a results frame."""
    return results[results.metric.str.startswith("check_") & (results.value < 1.0)]
