"""Collect every run's metric rows into the committed metrics: summary.json and tables."""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path

import pandas as pd
from tabulate import tabulate

from robust.io import save_json, save_parquet, save_text
from robust.tables import TABLES, render_index, render_table

ROW_ORDER = ["run", "study", "dataset", "arch", "defense", "profile", "seed",
             "attack", "norm", "eps", "steps", "metric", "value", "n"]


def load_results(paths: Iterable[str | Path]) -> pd.DataFrame:
    frames = [pd.read_parquet(path) for path in paths]
    results = pd.concat(frames, ignore_index=True)[ROW_ORDER]
    return results.sort_values(["run", "attack", "eps", "steps", "metric"], kind="stable").reset_index(drop=True)


def metric_key(row) -> str:
    """A stable, flat name for one metric of one run, e.g. ``pgd_linf_eps0.1_accuracy``."""
    if row.attack == "clean":
        return row.metric
    eps = "" if math.isnan(row.eps) else f"_{row.norm}_eps{row.eps:g}"
    return f"{row.attack}{eps}_{row.metric}"


def summarize(results: pd.DataFrame) -> dict:
    """``{run: {metric_key: value}}`` — the shape ``dvc metrics diff`` compares."""
    summary: dict[str, dict[str, float]] = {}
    for row in results.itertuples(index=False):
        summary.setdefault(row.run, {})[metric_key(row)] = round(row.value, 6)
    return summary


def run_table(results: pd.DataFrame, run: str) -> str:
    rows = [[metric_key(row), f"{row.value:.4f}", row.n] for row in results[results.run == run].itertuples()]
    return tabulate(rows, headers=[f"{run}", "value", "n"], tablefmt="simple")


def aggregate(result_paths: Iterable[str | Path], *, results_out: Path, summary_out: Path,
              tables_dir: Path) -> pd.DataFrame:
    results = load_results(result_paths)
    save_parquet(results, results_out)
    save_json(summarize(results), summary_out)
    for table_id in TABLES:
        save_text(render_table(TABLES.get(table_id), results), tables_dir / f"{table_id}.md")
    save_text(render_index(results), tables_dir / "README.md")
    return results
