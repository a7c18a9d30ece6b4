"""Plot data for `dvc plots`.

- Accuracy-vs-ε curves of every study, one file per attack setting. The papers draw their ε
  sweeps as figures (Jakubovitz Fig. 1, AFD Table A2 and Fig. 3, JARN's and SGR's curves); here
  every white-box suite entry with at least two ε values becomes one CSV,
  ``<study>-<attack>.csv`` with a row per (run, ε), so that one plot compares a study's runs
  under one attack. The template ``.dvc/plots/runs.json`` draws a line per run.
- Setting sweeps: a paper table whose rows are the values of one setting (``Table.sweep``, e.g.
  Jakubovitz Table 13's λ) becomes ``<table-id>.csv`` with, per row, the setting's value and each
  column's number (a field per column: its metric, or ``Sweep.fields`` where columns share one),
  once as reproduced and once as the paper reports it (field ``curve``), in the table's display
  units. The template ``.dvc/plots/sweep.json`` draws one line per curve.
- Training curves: ``<study>.csv`` with a row per (run, epoch) of held-out accuracy and loss, the
  base's pretraining followed by the run's own fine-tune on one epoch axis, because a run's
  robustness is the product of both phases (a 0-epoch run is its base as trained). The template
  ``.dvc/plots/training.json`` draws a line per run, leaving out the points without a value. A term
  a defense logs that a paper draws per epoch (``LOGGED_COLUMNS``: the accuracy of AFD's and JARN's
  discriminators, Bashivan et al. Fig. A5) is one more column, in the files of the studies where a
  run logs it (empty in the other runs' rows); dvc.yaml's ``plots:`` names the file and column of
  each such figure.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from functools import cache
from pathlib import Path

import pandas as pd

from robust.tables import TABLES, Table, cell_stats

log = logging.getLogger(__name__)

CURVE_KEYS = ["study", "attack", "label", "norm", "steps"]  # one curve family per attack setting
TRAINING_COLUMNS = ["run", "phase", "epoch", "held_out_accuracy", "loss"]
LOGGED_COLUMNS = ["disc_acc"]  # a study's file keeps those one of its runs logs
CURVE_COLUMNS = TRAINING_COLUMNS + LOGGED_COLUMNS
# The defense's whole objective where it logs one, else its cross-entropy term: the number its
# optimiser actually lowers, so a regulariser's trade-off shows in the curve.
LOSS_COLUMNS = ("loss", "ce")


def _name(study: str, attack: str, label: str, norm: str, steps: int) -> str:
    steps_part = "" if steps < 0 else f"_steps{steps}"
    return f"{study}-{label or attack}_{norm}{steps_part}.csv"


def sweep_curves(results: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """``{file name: frame(run, eps, accuracy)}`` for every white-box attack setting swept over ε."""
    accuracy = results[(results.source == "") & (results.metric == "accuracy") & results.eps.notna()]
    curves = {}
    for key, rows in accuracy.groupby(CURVE_KEYS, sort=True):
        if rows.eps.nunique() < 2:
            continue
        frame = rows[["run", "eps", "value"]].rename(columns={"value": "accuracy"})
        curves[_name(*key)] = frame.sort_values(["run", "eps"], kind="stable").reset_index(drop=True)
    return curves


def table_sweep(table: Table, results: pd.DataFrame) -> pd.DataFrame:
    """(setting, curve, <one field per column metric>) rows: ours where the row's runs have results."""
    fields = list(table.sweep.fields) or [column.metric for column in table.columns]
    if len(set(fields)) != len(fields):
        raise ValueError(f"table {table.id}: a swept table needs one field per column (Sweep.fields where "
                         f"columns share a metric), got {fields}")
    records = []
    for value, row in zip(table.sweep.values, table.rows):
        # rounded beyond the table's digits: the file shows the number, not float noise
        ours = [cell_stats(results, row.run_ids, column)[0] for column in table.columns]
        ours = [None if number is None else round(number, column.digits + 2)
                for number, column in zip(ours, table.columns)]
        if any(number is not None for number in ours):
            records.append({table.sweep.setting: value, "curve": "reproduced", **dict(zip(fields, ours))})
        records.append({table.sweep.setting: value, "curve": "paper", **dict(zip(fields, row.paper))})
    return pd.DataFrame.from_records(records, columns=[table.sweep.setting, "curve", *fields])


def sweep_tables(results: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """``{file name: table_sweep}`` for every registered table swept over a setting."""
    return {f"{table_id}.csv": table_sweep(TABLES.get(table_id), results)
            for table_id in TABLES if TABLES.get(table_id).sweep is not None}


def phase_curve(history: pd.DataFrame, run: str, phase: str, first_epoch: int = 0) -> pd.DataFrame:
    """CURVE_COLUMNS rows of one history, its epochs shifted so a fine-tune continues its base's line."""
    if history.empty:  # a 0-epoch fine-tune saves a frame without columns
        return pd.DataFrame(columns=CURVE_COLUMNS)
    loss = next((history[column] for column in LOSS_COLUMNS if column in history), math.nan)
    return pd.DataFrame({"run": run, "phase": phase, "epoch": history["epoch"].astype(int) + first_epoch,
                         "held_out_accuracy": history.get("held_out_accuracy", math.nan), "loss": loss,
                         **{column: history.get(column, math.nan) for column in LOGGED_COLUMNS}},
                        columns=CURVE_COLUMNS)


def run_training(run: str, pretrain: pd.DataFrame, finetune: pd.DataFrame) -> pd.DataFrame:
    """The whole training of one run: its base's pretraining, then its fine-tune from the next epoch on."""
    last_epoch = int(pretrain["epoch"].max()) if not pretrain.empty else 0
    phases = [phase_curve(pretrain, run, "pretrain"), phase_curve(finetune, run, "finetune", last_epoch)]
    frames = [frame for frame in phases if not frame.empty]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=CURVE_COLUMNS)


def _histories(run: str, index: Mapping[str, Mapping], bases_dir: Path, runs_dir: Path,
               read: Callable[[Path], pd.DataFrame] = pd.read_parquet) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """Both histories of ``run``, or None where one is not there (a run not trained in this workspace)."""
    base = index["runs"].get(run, {}).get("base")
    if base is None:
        log.info("run %s: no base in the index, no training curve", run)
        return None
    paths = [Path(bases_dir) / base / "history.parquet", Path(runs_dir) / run / "history.parquet"]
    missing = [str(path) for path in paths if not path.is_file()]
    if missing:
        log.info("run %s: no training curve, missing %s", run, ", ".join(missing))
        return None
    return read(paths[0]), read(paths[1])


def training_curves(results: pd.DataFrame, index: Mapping[str, Mapping], bases_dir: Path,
                    runs_dir: Path) -> dict[str, pd.DataFrame]:
    """``{"<study>.csv": run_training rows of every run of the study}``; ``index`` as ``load_index`` gives it."""
    curves = {}
    # many runs fine-tune one base (45 share the main base): read each history once
    read = cache(pd.read_parquet)
    for study, rows in results[["run", "study"]].drop_duplicates().groupby("study", sort=True):
        frames = [run_training(run, *histories) for run in sorted(rows.run)
                  if (histories := _histories(run, index, bases_dir, runs_dir, read)) is not None]
        frames = [frame for frame in frames if not frame.empty]
        if frames:
            curve = pd.concat(frames, ignore_index=True)
            curve = curve.drop(columns=[column for column in LOGGED_COLUMNS if curve[column].isna().all()])
            curves[f"{study}.csv"] = curve.sort_values(["run", "epoch"], kind="stable").reset_index(drop=True)
    return curves
