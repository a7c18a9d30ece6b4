"""Paper tables as data, and their rendering beside the reproduced numbers.

A ``Table`` names, for every cell, the run and metric that reproduce it and the value the
paper reports (transcribed once, with the file and table it came from). Rendering only
reads the tidy results rows; nothing here computes a number.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd
from tabulate import tabulate

from robust.registry import Registry
from robust.sanity import RUN_WIDE, violations

TABLES: Registry = Registry("table", "--table")
NOT_IN_TEXT = "not in text"
FLAG = "⚠"


@dataclass(frozen=True)
class Column:
    label: str
    attack: str  # "clean" for clean-input metrics
    metric: str  # "accuracy", "rho_adv", ...
    scale: float = 1.0  # multiply stored values for display (accuracy → %)
    digits: int = 2
    # narrow the rows a cell reads when a run has several settings of one attack (None: any)
    attack_label: str | None = None  # the suite entry's label
    norm: str | None = None
    eps: float | None = None
    steps: int | None = None
    source: str = ""  # transfer cells: the run that crafted the examples

    def matches(self, results: pd.DataFrame) -> pd.Series:
        mask = (results.attack == self.attack) & (results.source == self.source)
        for name, wanted in (("label", self.attack_label), ("norm", self.norm), ("eps", self.eps),
                             ("steps", self.steps)):
            if wanted is not None:
                mask &= (results[name] - wanted).abs() < 1e-9 if name == "eps" else results[name] == wanted
        return mask


@dataclass(frozen=True)
class Row:
    label: str
    run: str | None  # None: the defense of this row is not implemented yet
    paper: tuple[float | None, ...]  # one per column, None where the text lost the number


@dataclass(frozen=True)
class Table:
    id: str
    title: str
    source: str  # seed file and table number the paper values come from
    columns: tuple[Column, ...]
    rows: tuple[Row, ...]
    notes: tuple[str, ...] = field(default_factory=tuple)

    def runs(self) -> list[str]:
        return [row.run for row in self.rows if row.run is not None]


def register_table(table: Table) -> Table:
    TABLES.register(table.id)(table)
    return table


def cell_value(results: pd.DataFrame, run: str, column: Column) -> float | None:
    match = results[(results.run == run) & column.matches(results) & (results.metric == column.metric)]
    if match.value.nunique() > 1:
        raise ValueError(f"column {column.label!r} of run {run!r} matches {len(match)} different values: "
                         "give the column an attack_label, norm, eps or steps")
    return None if match.empty else float(match.value.iloc[0]) * column.scale


def cell_flagged(results: pd.DataFrame, run: str, column: Column) -> bool:
    """Whether a sanity check questions this cell: a violated check on its attack, or a run-wide one."""
    failed = violations(results[results.run == run])
    if column.attack == "clean" or failed.empty:
        return False
    return bool((column.matches(failed) | failed.metric.isin(RUN_WIDE)).any())


def _fmt(value: float | None, digits: int, flagged: bool = False) -> str:
    text = "—" if value is None or math.isnan(value) else f"{value:.{digits}f}"
    return f"{text} {FLAG}" if flagged else text


def table_status(table: Table, results: pd.DataFrame) -> str:
    """How far the table is reproduced: the profiles of the runs that fed it."""
    present = results[results.run.isin(table.runs())]
    if present.empty:
        return "not yet"
    profiles = set(present.profile)
    scale = "paper scale" if profiles == {"paper"} else "cpu scale" if "smoke" not in profiles else "smoke only"
    missing = len(table.rows) - present.run.nunique()
    return scale + (f" ({missing} of {len(table.rows)} rows not yet)" if missing else "")


def render_table(table: Table, results: pd.DataFrame) -> str:
    """GitHub markdown: reproduced | paper | difference per column, plus the run's profile/dataset."""
    headers = ["Row"]
    for column in table.columns:
        headers += [f"{column.label} (ours)", f"{column.label} (paper)", "Δ"]
    headers += ["profile / dataset"]
    body = []
    for row in table.rows:
        line = [row.label]
        for column, paper in zip(table.columns, row.paper):
            ours = cell_value(results, row.run, column) if row.run else None
            flagged = ours is not None and cell_flagged(results, row.run, column)
            diff = None if ours is None or paper is None else ours - paper
            line += [_fmt(ours, column.digits, flagged), NOT_IN_TEXT if paper is None else _fmt(paper, column.digits),
                     _fmt(diff, column.digits)]
        meta = results[results.run == row.run] if row.run else results.iloc[0:0]
        line.append("defense not implemented yet" if row.run is None else
                    "not run" if meta.empty else f"{meta.profile.iloc[0]} / {meta.dataset.iloc[0]}")
        body.append(line)
    status = table_status(table, results)
    warning = ("" if status.startswith("paper scale") else
               "\n> Reproduced values come from a reduced profile: they are not comparable to the paper's.\n")
    notes = "".join(f"- {note}\n" for note in table.notes)
    if violations(results[results.run.isin(table.runs())]).shape[0]:
        notes += (f"- {FLAG} a sanity check failed for this number (possible gradient masking or a broken "
                  "attack): run `robust audit` for the details.\n")
    return (f"# {table.id}: {table.title}\n\nPaper values: {table.source}. Status: **{status}**.\n{warning}\n"
            + tabulate(body, headers=headers, tablefmt="github", disable_numparse=True) + "\n"
            + (f"\n{notes}" if notes else ""))


def render_index(results: pd.DataFrame) -> str:
    rows = [[f"[{table_id}]({table_id}.md)", TABLES.get(table_id).title, table_status(TABLES.get(table_id), results)]
            for table_id in TABLES]
    return "# Paper tables\n\n" + tabulate(rows, headers=["table", "title", "status"], tablefmt="github") + "\n"


from robust.tables import jakubovitz2018  # noqa: E402,F401  (registers its tables)
