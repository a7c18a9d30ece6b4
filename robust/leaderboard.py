"""The cross-paper leaderboard: every defense on one network, one attack suite and one budget.

None of the five papers compares its defense with the others' on equal footing. The study
``studies/leaderboard.yaml`` trains each defense from scratch on the same network with the same
schedule; this module renders its results: one row per defense, ranked by AutoAttack accuracy (the
attack least fooled by gradient masking; ties broken by PGD-L∞, PGD-L2, then DeepFool ρ_adv), with
every number read from the tidy results rows and a ⚠ on any cell a sanity check questions
(``robust audit``).

The training-cost column is wall-clock time (seconds per epoch ÷ the standard model's, both
measured by the same pipeline on the same machine): it is not byte-reproducible, which is why the
leaderboard is its own stage and not part of ``aggregate``, whose outputs must be.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import pandas as pd
from tabulate import tabulate

from robust.io import save_text
from robust.tables import Column, cell_flagged, cell_value, format_cell

STUDY = "leaderboard"
REFERENCE = "standard"  # the defense whose training cost is 1.0 and whose examples feed the transfer column
PREFIX = f"{STUDY}-"

# the study's budgets (studies/leaderboard.yaml): the attack stage also writes PGD rows of its own
# large-ε sanity check, which the ε keeps out of these cells
LINF_EPS, L2_EPS = 0.3, 2.0
COLUMNS = (
    Column("clean %", "clean", "accuracy", scale=100),
    Column("FGSM %", "fgsm", "accuracy", scale=100, eps=LINF_EPS),
    Column("PGD-L∞ %", "pgd", "accuracy", scale=100, norm="linf", eps=LINF_EPS),
    Column("PGD-L2 %", "pgd", "accuracy", scale=100, norm="l2", eps=L2_EPS),
    Column("AutoAttack %", "autoattack", "accuracy", scale=100, eps=LINF_EPS),
    Column(f"PGD-L∞ from {REFERENCE} %", "pgd", "accuracy", scale=100, attack_label="pgd-transfer",
           eps=LINF_EPS, source=PREFIX + REFERENCE),
    Column("DeepFool ρ_adv ×10²", "deepfool", "rho_adv", scale=100),
    Column("C&W ρ_adv ×10²", "cw", "rho_adv", scale=100),
)
# ties (common at a reduced scale, where every model may fall to 0% at ε = 0.3) go to the next column
RANK_BY = ("AutoAttack %", "PGD-L∞ %", "PGD-L2 %", "DeepFool ρ_adv ×10²")


def seconds_per_epoch(costs_dir: Path, base: str) -> float | None:
    """The base's mean wall-clock seconds per training epoch, None where it was not measured."""
    path = costs_dir / f"{base}.json"
    return json.loads(path.read_text())["seconds_per_epoch"] if path.exists() else None


def leaderboard_frame(results: pd.DataFrame, runs: list[str], costs: Mapping[str, float | None]) -> pd.DataFrame:
    """One row per run: every column's value (None where missing), its flag, and the relative cost."""
    reference = costs.get(PREFIX + REFERENCE)
    rows = []
    for run in runs:
        row = {"defense": run.removeprefix(PREFIX)}
        for column in COLUMNS:
            value = cell_value(results, run, column)
            row[column.label] = value
            row[f"{column.label} flagged"] = value is not None and cell_flagged(results, run, column)
        cost = costs.get(run)
        row["cost"] = None if cost is None or not reference else cost / reference
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    # a row whose AutoAttack cell a sanity check questions (e.g. a constant classifier that PGD at
    # ε = 0.5 cannot move: its "robust" accuracy is chance) goes below every row the checks trust
    trusted = ~frame[f"{RANK_BY[0]} flagged"]
    ranked = frame.assign(trusted=trusted).sort_values(["trusted", *RANK_BY], ascending=False, na_position="last",
                                                       kind="stable")
    return ranked.drop(columns="trusted").reset_index(drop=True)


def render_leaderboard(results: pd.DataFrame, dataset: str, costs: Mapping[str, float | None]) -> str:
    """GitHub markdown for the leaderboard runs evaluated on ``dataset``."""
    on_dataset = results[results.dataset == dataset]
    own = on_dataset[(on_dataset.study == STUDY) & (on_dataset.source == "")]
    runs = sorted(own.run.unique())
    frame = leaderboard_frame(on_dataset, runs, costs)
    profiles = ", ".join(sorted(own.profile.unique()))
    body = [[rank, row["defense"],
             *(format_cell(row[column.label], column.digits, row[f"{column.label} flagged"]) for column in COLUMNS),
             format_cell(row["cost"], 2)]
            for rank, row in enumerate(frame.to_dict("records"), start=1)]
    headers = ["#", "defense", *(column.label for column in COLUMNS), "s/epoch ÷ standard"]
    warning = "" if profiles == "paper" else (
        f"\n> Profile {profiles}: a reduced scale; the ranking shows the machinery, not the defenses' merit.\n")
    return (f"# leaderboard-{dataset}: every defense, one network, one attack suite\n\n"
            f"Each defense trains the same network from scratch with the same schedule (studies/leaderboard.yaml); "
            f"ranked by AutoAttack accuracy, ties broken by PGD-L∞, PGD-L2, then DeepFool ρ_adv, and a row "
            f"whose AutoAttack cell a sanity check questions (⚠, `robust audit`) below the others. Robust "
            f"accuracies count a point only if it is classified correctly both clean and attacked. The last "
            f"column is wall-clock training time per epoch relative to the standard model's, as each base's "
            f"pretrain stage measured it: under whatever load the machine had then (benchmarks/bench_training.py "
            f"times every defense in one process).\n{warning}\n"
            + tabulate(body, headers=headers, tablefmt="github", disable_numparse=True) + "\n")


def write_leaderboards(results: pd.DataFrame, run_bases: Mapping[str, str], costs_dir: Path, out_dir: Path) -> list[Path]:
    """``leaderboard-<dataset>.md`` for every dataset the leaderboard study ran on, and an index page.

    ``run_bases`` maps each run to the base it was trained as (its training cost is the base's).
    """
    own = results[results.study == STUDY]
    costs = {run: seconds_per_epoch(costs_dir, run_bases[run]) for run in own.run.unique() if run in run_bases}
    written = []
    for dataset in sorted(own.dataset.unique()):
        path = out_dir / f"leaderboard-{dataset}.md"
        save_text(render_leaderboard(results, dataset, costs), path)
        written.append(path)
    pages = "".join(f"- [{path.stem}]({path.name})\n" for path in written) or "No leaderboard runs in the results yet.\n"
    save_text(f"# Cross-paper leaderboards\n\n{pages}", out_dir / "README.md")
    return written
