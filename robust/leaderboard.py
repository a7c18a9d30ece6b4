"""The cross-paper leaderboards: every defense on one network, one attack suite and one budget.

None of the five papers compares its defense with the others' on equal footing. Each leaderboard
study (``studies/leaderboard.yaml`` on the main run's data, ``studies/leaderboard-cifar10.yaml`` on
CIFAR-10) trains each defense from scratch on the same network with the same schedule; this module
renders their results: one row per defense, ranked by AutoAttack accuracy (the attack least fooled by
gradient masking; ties broken by PGD-L∞, PGD-L2, then DeepFool ρ_adv), with every number read from
the tidy results rows and a ⚠ on any cell a sanity check questions (``robust audit``).

The pages are ``metrics/tables/leaderboard-<dataset>.md``, written by the ``aggregate`` stage beside
the paper tables and listed in their index. The training-cost column is wall-clock time (seconds
per epoch ÷ the standard model's, both measured by the same pipeline on the same machine): it is
the one column of ``metrics/tables`` that is not byte-reproducible. The results parquet and
``summary.json`` never read it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import pandas as pd
from tabulate import tabulate

from robust.costs import seconds_per_epoch
from robust.io import save_text
from robust.tables import Column, cell_flagged, cell_value, format_cell

REFERENCE = "standard"  # the defense whose training cost is 1.0 and whose examples feed the transfer column
# ties (common at a reduced scale, where every model may fall to 0% at the study's ε) go to the next column
RANK_BY = ("AutoAttack %", "PGD-L∞ %", "PGD-L2 %", "DeepFool ρ_adv ×10²")


@dataclass(frozen=True)
class Leaderboard:
    """One leaderboard study and the budgets of its attack suite.

    The attack stage also writes PGD rows of its own large-ε sanity check, which the budgets keep out of
    the cells. ``page`` names the study's page; None: one page per dataset the study ran on,
    ``<study>-<dataset>`` (the main run's study follows params.yaml's data, digits at smoke).
    """

    study: str
    linf_eps: float
    l2_eps: float
    page: str | None = None

    @property
    def prefix(self) -> str:
        return f"{self.study}-"

    def page_name(self, dataset: str) -> str:
        return self.page or f"{self.study}-{dataset}"

    @cached_property  # read for every run and row of a page: built once per leaderboard
    def columns(self) -> tuple[Column, ...]:
        return (
            Column("clean %", "clean", "accuracy", scale=100),
            Column("FGSM %", "fgsm", "accuracy", scale=100, eps=self.linf_eps),
            # label "": the suite's own PGD, not the reference model's crafting of its transfer examples,
            # which has the same ε (on CIFAR-10 the same steps too) and a white-box row of its own
            Column("PGD-L∞ %", "pgd", "accuracy", scale=100, attack_label="", norm="linf", eps=self.linf_eps),
            Column("PGD-L2 %", "pgd", "accuracy", scale=100, norm="l2", eps=self.l2_eps),
            Column("AutoAttack %", "autoattack", "accuracy", scale=100, eps=self.linf_eps),
            Column(f"PGD-L∞ from {REFERENCE} %", "pgd", "accuracy", scale=100, attack_label="pgd-transfer",
                   eps=self.linf_eps, source=self.prefix + REFERENCE),
            Column("DeepFool ρ_adv ×10²", "deepfool", "rho_adv", scale=100),
            Column("C&W ρ_adv ×10²", "cw", "rho_adv", scale=100),
        )


# the budgets of the studies' attack suites (tests/test_leaderboard.py holds them to the study files)
LEADERBOARDS = (
    Leaderboard("leaderboard", linf_eps=0.3, l2_eps=2.0),
    Leaderboard("leaderboard-cifar10", linf_eps=8 / 255, l2_eps=0.5, page="leaderboard-cifar10"),
)


def leaderboard_frame(board: Leaderboard, results: pd.DataFrame, runs: list[str],
                      costs: Mapping[str, float | None]) -> pd.DataFrame:
    """One row per run: every column's value (None where missing), its flag, and the relative cost."""
    reference = costs.get(board.prefix + REFERENCE)
    rows = []
    for run in runs:
        row = {"defense": run.removeprefix(board.prefix)}
        for column in board.columns:
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


def render_leaderboard(board: Leaderboard, results: pd.DataFrame, dataset: str,
                       costs: Mapping[str, float | None]) -> str:
    """GitHub markdown for the runs of ``board``'s study evaluated on ``dataset``."""
    on_dataset = results[results.dataset == dataset]
    own = on_dataset[(on_dataset.study == board.study) & (on_dataset.source == "")]
    runs = sorted(own.run.unique())
    # every cell reads its own run's rows (white-box and transfer): scan those, not the whole data set's
    frame = leaderboard_frame(board, on_dataset[on_dataset.run.isin(runs)], runs, costs)
    profiles = ", ".join(sorted(own.profile.unique()))
    body = [[rank, row["defense"],
             *(format_cell(row[column.label], column.digits, row[f"{column.label} flagged"])
               for column in board.columns),
             format_cell(row["cost"], 2)]
            for rank, row in enumerate(frame.to_dict("records"), start=1)]
    headers = ["#", "defense", *(column.label for column in board.columns), "s/epoch ÷ standard"]
    warning = "" if profiles == "paper" else (
        f"\n> Profile {profiles}: a reduced scale; the ranking shows the machinery, not the defenses' merit.\n")
    return (f"# {board.page_name(dataset)}: every defense, one network, one attack suite\n\n"
            f"Data: `{dataset}`. Each defense trains the same network from scratch with the same schedule "
            f"(studies/{board.study}.yaml); ranked by AutoAttack accuracy, ties broken by PGD-L∞, PGD-L2, then "
            f"DeepFool ρ_adv, and a row whose AutoAttack cell a sanity check questions (⚠, `robust audit`) below "
            f"the others. Robust accuracies count a point only if it is classified correctly both clean and "
            f"attacked. The last column is wall-clock training time per epoch relative to the standard model's, "
            f"as each base's pretrain stage measured it: under whatever load the machine had then "
            f"(benchmarks/bench_training.py times every defense in one process).\n{warning}\n"
            + tabulate(body, headers=headers, tablefmt="github", disable_numparse=True) + "\n")


def write_leaderboards(results: pd.DataFrame, run_bases: Mapping[str, str], costs_dir: Path, out_dir: Path) -> list[Path]:
    """A page for every leaderboard study and dataset it ran on (``Leaderboard.page_name``), in ``out_dir``.

    ``run_bases`` maps each run to the base it was trained as (its training cost is the base's).
    """
    written = []
    for board in LEADERBOARDS:
        own = results[results.study == board.study]
        costs = {run: seconds_per_epoch(costs_dir / f"{run_bases[run]}.json") for run in own.run.unique()
                 if run in run_bases}
        for dataset in sorted(own.dataset.unique()):
            path = out_dir / f"{board.page_name(dataset)}.md"
            save_text(render_leaderboard(board, results, dataset, costs), path)
            written.append(path)
    return written
