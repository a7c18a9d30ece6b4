"""Collect every run's metric rows into the committed metrics: summary.json, tables and plot data."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pathlib import Path

import pandas as pd
from tabulate import tabulate

from robust.chance_level import chance_checks, constant_accuracies
from robust.index import run_bases
from robust.io import save_json, save_parquet, save_text
from robust.leaderboard import write_leaderboards
from robust.plots import sweep_curves, sweep_tables, training_curves
from robust.results import RESULT_COLUMNS, SORT_KEYS, metric_key
from robust.sanity import violations
from robust.tables import TABLES, render_index, render_table
from robust.tables.transfer import transfer_matrices

# What summary.json keeps of each run (the headline numbers `dvc metrics diff` compares); the
# full rows, norms and success rates included, are in results.parquet.
SUMMARY_METRICS = ("accuracy", "rho_adv", "auc", "jacobian_fro", "alignment")


def load_results(paths: Iterable[str | Path]) -> pd.DataFrame:
    frames = [frame for frame in (pd.read_parquet(path) for path in paths) if not frame.empty]
    return _sorted(pd.concat(frames, ignore_index=True)[RESULT_COLUMNS])


def _sorted(results: pd.DataFrame) -> pd.DataFrame:
    return results.sort_values(SORT_KEYS, kind="stable").reset_index(drop=True)


def with_chance_checks(results: pd.DataFrame, chance: Mapping[str, float]) -> pd.DataFrame:
    """The results with each run's clean-accuracy-above-chance check row (``robust.chance_level``)."""
    return _sorted(pd.concat([results, chance_checks(results, chance)], ignore_index=True))


def summarize(results: pd.DataFrame) -> dict:
    """``{run: {metric_key: value, ..., checks_violated: count}}`` — the shape ``dvc metrics diff`` compares."""
    summary: dict[str, dict[str, float]] = {}
    headline = results[results.metric.isin(SUMMARY_METRICS)]
    for row in headline.itertuples(index=False):
        if not math.isnan(row.value):  # JSON has no NaN
            summary.setdefault(row.run, {})[metric_key(row)] = round(row.value, 6)
    failed = violations(results).groupby("run").size()
    for run, metrics in summary.items():
        metrics["checks_violated"] = int(failed.get(run, 0))
    return summary


def run_table(results: pd.DataFrame, run: str) -> str:
    own = results[(results.run == run) & results.metric.isin(SUMMARY_METRICS)]
    rows = [[metric_key(row), f"{row.value:.4f}", row.n] for row in own.itertuples()]
    return tabulate(rows, headers=[f"{run}", "value", "n"], tablefmt="simple")


def save_curves(curves: Mapping[str, pd.DataFrame], directory: Path) -> None:
    for name, curve in curves.items():
        save_text(curve.to_csv(index=False), directory / name)


def aggregate(result_paths: Iterable[str | Path], *, results_out: Path, summary_out: Path,
              tables_dir: Path, plots_dir: Path | None = None, sweeps_dir: Path | None = None,
              training_dir: Path | None = None, bases_dir: Path | None = None, runs_dir: Path | None = None,
              prepared_dir: Path | None = None, costs_dir: Path | None = None,
              index: Mapping[str, Mapping] | None = None) -> pd.DataFrame:
    """Every output from the same results; each kind of plot data only where its directory is given.

    Training curves also read the histories under ``bases_dir`` and ``runs_dir``, and ``index``
    (as ``robust.index.load_index`` gives it) names each run's base. With ``prepared_dir`` (the prepare
    stage's outputs) each run's clean accuracy is checked against chance, the index naming its dataset.
    With ``costs_dir`` (the pretrain stage's cost files) the cross-paper leaderboards join the tables.
    """
    if training_dir is not None and None in (bases_dir, runs_dir, index):
        raise ValueError("training curves need bases_dir, runs_dir and the index")
    if prepared_dir is not None and index is None:
        raise ValueError("the check against chance needs the index")
    if costs_dir is not None and index is None:
        raise ValueError("the leaderboards' training costs need the index (each run's base)")
    results = load_results(result_paths)
    if prepared_dir is not None:
        results = with_chance_checks(results, constant_accuracies(index["runs"], prepared_dir))
    save_parquet(results, results_out)
    save_json(summarize(results), summary_out)
    for table_id in TABLES:
        save_text(render_table(TABLES.get(table_id), results), tables_dir / f"{table_id}.md")
    pages = []
    for study, page in transfer_matrices(results).items():
        save_text(page, tables_dir / f"transfer-{study}.md")
        pages.append(f"transfer-{study}")
    if costs_dir is not None:
        pages += [path.stem for path in write_leaderboards(results, run_bases(index), costs_dir, tables_dir)]
    save_text(render_index(results, pages), tables_dir / "README.md")
    if plots_dir is not None:
        save_curves(sweep_curves(results), plots_dir)
    if sweeps_dir is not None:
        save_curves(sweep_tables(results), sweeps_dir)
    if training_dir is not None:
        save_curves(training_curves(results, index, bases_dir, runs_dir), training_dir)
    return results
