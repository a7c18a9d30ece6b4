"""The check that a run's clean accuracy is above chance: below it, its robustness numbers mean nothing.

A network that collapsed to (nearly) a constant prediction keeps its accuracy under any attack,
because an attack only counts points that were classified right, and there are next to none; its
ρ_adv comes from the few points it gets right by luck. Such a row can look robust in a table.

``check_clean_above_chance`` holds when the clean accuracy a on n points exceeds the accuracy p₀ of
the best constant classifier (the share of the test split's most frequent class, from the prepared
dataset's manifest) by more than three standard errors of a binomial proportion:
a > p₀ + 3·√(p₀(1 − p₀)/n). On 10 balanced classes that is 14.7% on 359 points, 14.0% on 500. The
attacked points are a seeded subset of the test split, so p₀ is their majority share only up to
sampling noise, which the three standard errors cover.

Unlike the checks of ``robust.sanity`` this one needs no attack and no model: it is computed by the
aggregate stage from the tidy rows and the manifests, and, like the large-ε check, it questions every
attack number of the run (``robust.tables.RUN_WIDE_CHECKS``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

CHECK = "check_clean_above_chance"
STANDARD_ERRORS = 3.0


def constant_accuracy(manifest: Mapping) -> float:
    """What the best constant classifier scores on the prepared test split: its majority class share."""
    counts = manifest["class_counts"]["test"]
    return max(counts) / sum(counts)


def constant_accuracies(runs: Mapping[str, Mapping], prepared_dir: Path) -> dict[str, float]:
    """Each run of the index → the constant-classifier accuracy of its dataset's test split."""
    by_dataset: dict[str, float] = {}
    for fields in runs.values():
        dataset = fields["dataset"]
        if dataset not in by_dataset:
            path = prepared_dir / dataset / "manifest.json"
            if not path.exists():
                raise FileNotFoundError(f"{path} does not exist: run `dvc repro prepare@{dataset}` first")
            by_dataset[dataset] = constant_accuracy(json.loads(path.read_text()))
    return {run: by_dataset[fields["dataset"]] for run, fields in runs.items()}


def above_chance(accuracy, chance, n):
    """Whether ``accuracy`` on ``n`` points is clear of ``chance``: numbers, or aligned Series of them."""
    return accuracy > chance + STANDARD_ERRORS * (chance * (1 - chance) / n) ** 0.5


def chance_checks(results: pd.DataFrame, chance: Mapping[str, float]) -> pd.DataFrame:
    """One check row per white-box clean accuracy row of a run in ``chance``, beside it.

    Runs the index no longer lists (result files a removed run left behind) have no known
    dataset and get no row.
    """
    clean = results[(results.attack == "clean") & (results.metric == "accuracy") & (results.source == "")
                    & results.run.isin(list(chance))]
    holds = above_chance(clean.value, clean.run.map(chance), clean.n)
    return clean.assign(metric=CHECK, value=holds.astype(float))


def runs_at_chance(results: pd.DataFrame) -> set[str]:
    """The runs whose check against chance failed."""
    return set(results[(results.metric == CHECK) & (results.value < 1.0)].run)
