"""Paper tables as data, and their rendering beside the reproduced numbers.

A ``Table`` names, for every cell, the run and metric that reproduce it and the value the
paper reports (transcribed once, with the file and table it came from). Rendering only
reads the tidy results rows; nothing here computes a number.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd
from tabulate import tabulate

from robust import chance_level
from robust.registry import Registry
from robust.sanity import RUN_WIDE, violations
from robust.tables.reproduced import REPRODUCED

TABLES: Registry = Registry("table", "--table")
NOT_IN_TEXT = "not in text"
FLAG = "⚠"
# a violation of these questions every attack number of the run, not one attack's
RUN_WIDE_CHECKS = RUN_WIDE | {chance_level.CHECK}


@dataclass(frozen=True)
class Column:
    label: str
    attack: str  # "clean" for clean-input metrics
    metric: str  # "accuracy", "rho_adv", ...
    scale: float = 1.0  # multiply stored values for display (accuracy → %)
    offset: float = 0.0  # added after scaling (error % = 100 − 100 · accuracy)
    digits: int = 2
    # narrow the rows a cell reads when a run has several settings of one attack (None: any)
    attack_label: str | None = None  # the suite entry's label
    norm: str | None = None
    eps: float | None = None
    steps: int | None = None
    source: str = ""  # transfer cells: the run that crafted the examples
    # transfer cells read from one run (a judge) with the row's run as the source
    read_from: str | None = None

    def matches(self, results: pd.DataFrame, source: str | None = None) -> pd.Series:
        mask = (results.attack == self.attack) & (results.source == (self.source if source is None else source))
        for name, wanted in (("label", self.attack_label), ("norm", self.norm), ("eps", self.eps),
                             ("steps", self.steps)):
            if wanted is not None:
                mask &= (results[name] - wanted).abs() < 1e-9 if name == "eps" else results[name] == wanted
        return mask


@dataclass(frozen=True)
class Row:
    label: str
    # None: the defense of this row is not implemented yet; several runs: repeats of the row
    # (e.g. one per training seed), shown as mean ± standard deviation
    run: str | tuple[str, ...] | None
    paper: tuple[float | None, ...]  # one per column, None where the text lost the number
    # the token that opens the row in the seed text, searched in running text: for a table the text
    # flattened ("[7] 0.90 0.228 ...") or whose rows it names otherwise (Table 13's "0.001 99.00% ..."); or,
    # where the text merged a table's labels into one cell and its values into the next (AFD Table A6), the
    # row's label there
    in_text: str | None = None

    @property
    def run_ids(self) -> tuple[str, ...]:
        if self.run is None:
            return ()
        return (self.run,) if isinstance(self.run, str) else tuple(self.run)


@dataclass(frozen=True)
class Sweep:
    """A table whose rows are the values of one setting (e.g. Jakubovitz Table 13: λ from 0 to 1):
    drawn as a curve of each column against it, ours beside the paper's (``robust.plots``)."""

    setting: str  # the x field of the plot data, e.g. "lambda"
    values: tuple[float, ...]  # one per row, in row order
    # the plot data's field of each column; empty: each column's metric (which must then differ)
    fields: tuple[str, ...] = ()


@dataclass(frozen=True)
class Table:
    id: str
    title: str
    source: str  # seed file and table number the paper values come from
    columns: tuple[Column, ...]
    rows: tuple[Row, ...]
    notes: tuple[str, ...] = field(default_factory=tuple)
    sweep: Sweep | None = None

    def __post_init__(self):
        if self.sweep is not None and len(self.sweep.values) != len(self.rows):
            raise ValueError(f"table {self.id}: {len(self.sweep.values)} sweep values for {len(self.rows)} rows")
        if self.sweep is not None and self.sweep.fields and len(self.sweep.fields) != len(self.columns):
            raise ValueError(f"table {self.id}: {len(self.sweep.fields)} sweep fields for {len(self.columns)} columns")

    def runs(self) -> list[str]:
        return [run for row in self.rows for run in row.run_ids]

    def runs_read(self) -> list[str]:
        """The rows' runs and any run a column reads its cells from (a judge)."""
        return self.runs() + sorted({column.read_from for column in self.columns if column.read_from})


def register_table(table: Table) -> Table:
    TABLES.register(table.id)(table)
    return table


def cell_value(results: pd.DataFrame, run: str, column: Column) -> float | None:
    reader, source = (column.read_from, run) if column.read_from else (run, None)
    match = results[(results.run == reader) & column.matches(results, source) & (results.metric == column.metric)]
    if match.value.nunique() > 1:
        raise ValueError(f"column {column.label!r} of run {run!r} matches {len(match)} different values: "
                         "give the column an attack_label, norm, eps or steps")
    return None if match.empty else column.offset + float(match.value.iloc[0]) * column.scale


def cell_stats(results: pd.DataFrame, runs: tuple[str, ...], column: Column) -> tuple[float | None, float | None]:
    """Mean over the row's runs that have a value, and the sample standard deviation (None below 2 values).

    A NaN (a metric undefined for that run, e.g. a mean norm with no point flipped) is no value: the
    mean and the deviation are over the same runs."""
    values = [v for v in (cell_value(results, run, column) for run in runs) if v is not None and not math.isnan(v)]
    if not values:
        return None, None
    spread = pd.Series(values).std() if len(values) > 1 else None
    return sum(values) / len(values), spread


def cell_flagged(results: pd.DataFrame, run: str, column: Column) -> bool:
    """Whether a sanity check questions this cell: a violated check on its attack, or a run-wide one of
    the run or of the run the column reads from (a judge at chance questions every cell it judged)."""
    if column.attack == "clean":
        return False
    if column.read_from and violations(results[results.run == column.read_from]).metric.isin(RUN_WIDE_CHECKS).any():
        return True
    failed = violations(results[results.run == run])
    return bool((column.matches(failed) | failed.metric.isin(RUN_WIDE_CHECKS)).any())


def format_cell(value: float | None, digits: int, flagged: bool = False, spread: float | None = None) -> str:
    text = "—" if value is None or math.isnan(value) else f"{value:.{digits}f}"
    if spread is not None and value is not None and not math.isnan(value):
        text += f" ± {spread:.{digits}f}"
    return f"{text} {FLAG}" if flagged else text


def table_status(table: Table, results: pd.DataFrame) -> str:
    """How far the table is reproduced: the profiles of the runs that fed it."""
    present = results[results.run.isin(table.runs())]
    if present.empty:
        return "not yet"
    profiles = set(present.profile)
    scale = "paper scale" if profiles == {"paper"} else "cpu scale" if "smoke" not in profiles else "smoke only"
    missing = sum(not set(row.run_ids) & set(present.run) for row in table.rows)
    return scale + (f" ({missing} of {len(table.rows)} rows not yet)" if missing else "")


def render_table(table: Table, results: pd.DataFrame) -> str:
    """GitHub markdown: reproduced | paper | difference per column, plus the run's profile/dataset."""
    # every cell scans the rows it may read: the table's own runs, not the whole pipeline's
    results = results[results.run.isin(table.runs_read())]
    headers = ["Row"]
    for column in table.columns:
        headers += [f"{column.label} (ours)", f"{column.label} (paper)", "Δ"]
    headers += ["profile / dataset"]
    body = []
    for row in table.rows:
        line = [row.label]
        for column, paper in zip(table.columns, row.paper):
            ours, spread = cell_stats(results, row.run_ids, column)
            flagged = ours is not None and any(cell_flagged(results, run, column) for run in row.run_ids)
            diff = None if ours is None or paper is None else ours - paper
            paper_cell = NOT_IN_TEXT if paper is None else format_cell(paper, column.digits)
            line += [format_cell(ours, column.digits, flagged, spread), paper_cell, format_cell(diff, column.digits)]
        line.append(_provenance(row, results))
        body.append(line)
    status = table_status(table, results)
    warning = ("" if status.startswith("paper scale") else
               "\n> Reproduced values come from a reduced profile: they are not comparable to the paper's.\n")
    notes = "".join(f"- {note}\n" for note in table.notes)
    read = table.runs_read()
    failed = violations(results[results.run.isin(read)])
    if (failed.metric != chance_level.CHECK).any():
        notes += (f"- {FLAG} a sanity check failed for this number (possible gradient masking or a broken "
                  "attack): run `robust audit` for the details.\n")
    if chance_level.runs_at_chance(results) & set(read):
        notes += (f"- {FLAG} on every attack number of a run whose clean accuracy is at chance (within three "
                  "standard errors of a constant classifier's: the network collapsed), and on every cell read from a "
                  "judge at chance: those numbers mean nothing.\n")
    return (f"# {table.id}: {table.title}\n\nPaper values: {table.source}. Status: **{status}**.\n{warning}\n"
            + tabulate(body, headers=headers, tablefmt="github", disable_numparse=True) + "\n"
            + (f"\n{notes}" if notes else ""))


def _provenance(row: Row, results: pd.DataFrame) -> str:
    """The profile / dataset of the row's runs, and how many of its repeats ran."""
    if row.run is None:
        return "defense not implemented yet"
    meta = results[results.run.isin(row.run_ids)]
    if meta.empty:
        return "not run"
    text = f"{meta.profile.iloc[0]} / {meta.dataset.iloc[0]}"
    if len(row.run_ids) > 1:
        text += f", {meta.run.nunique()} of {len(row.run_ids)} seeds"
    return text


def index_status(table_id: str, current: str) -> str:
    """The largest scale the table has been reproduced at: a documented larger run (``REPRODUCED``,
    linked from ``metrics/tables/``) or else ``current``, the status of the results at hand."""
    documented = REPRODUCED.get(table_id)
    if documented is None:
        return current
    return f"{documented.profile} scale, {documented.extent}: [numbers](../../{documented.page})"


def render_index(results: pd.DataFrame, pages: Sequence[str] = ()) -> str:
    """The paper tables with their status, then ``pages``: the other pages of the folder (file stems)."""
    rows = []
    for table_id in TABLES:
        table = TABLES.get(table_id)
        current = table_status(table, results)
        rows.append([f"[{table_id}]({table_id}.md)", table.title, index_status(table_id, current), current])
    others = "".join(f"- [{page}]({page}.md)\n" for page in pages)
    return ("# Paper tables\n\nStatus: the largest scale each table has been reproduced at, with where its numbers "
            "are; the last column is that of the results these pages were rendered from.\n\n"
            + tabulate(rows, headers=["table", "title", "status", "these results"], tablefmt="github") + "\n"
            + (f"\n## Beyond the paper tables\n\nTransfer matrices and the cross-paper leaderboards:\n\n{others}"
               if others else ""))


from robust.tables import jakubovitz2018  # noqa: E402,F401  (registers its tables)
from robust.tables import jakubovitz2018_cifar  # noqa: E402,F401
from robust.tables import matyasko2018  # noqa: E402,F401
from robust.tables import chan2020  # noqa: E402,F401
from robust.tables import roth2018  # noqa: E402,F401
from robust.tables import bashivan2021  # noqa: E402,F401
from robust.tables import bashivan2021_cifar  # noqa: E402,F401
