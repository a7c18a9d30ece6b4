"""The ``robust`` command: read what the pipeline wrote in metrics/."""

from __future__ import annotations

import difflib
import json
import sys
from pathlib import Path

import click
import pandas as pd
from tabulate import tabulate

from robust.errors import ConfigError
from robust.index import check_index, load_index
from robust.lockfile import defined_stages, lock_coverage, recorded_stages
from robust.sanity import violations
from robust.tables import TABLES


@click.group()
def cli() -> None:
    """Reproducible adversarial-robustness defenses (run the pipeline with `dvc repro`)."""


@cli.command()
@click.option("--table", "table_id", default=None,
              help="print one paper table, e.g. jakubovitz2018-table3, a leaderboard, e.g. leaderboard-digits, "
                   "or a study's transfer matrix, e.g. transfer-roth2018")
@click.option("--run", "run_id", default=None, help="print every metric of one run, e.g. main")
@click.option("--metrics", "metrics_dir", default="metrics", show_default=True,
              type=click.Path(path_type=Path, file_okay=False))
def report(table_id: str | None, run_id: str | None, metrics_dir: Path) -> None:
    """Print the main run's metrics and the status of every table; or one table; or one run."""
    if table_id is not None and run_id is not None:
        raise click.UsageError("give --table or --run, not both")
    if table_id is not None:
        click.echo(_table_page(table_id, metrics_dir))
        return
    summary_path = metrics_dir / "summary.json"
    if not summary_path.exists():
        raise click.ClickException(f"{summary_path} does not exist: run `dvc repro` first")
    summary = json.loads(summary_path.read_text())
    # the training cost (wall-clock, so a metrics file of its own: robust/costs.py) joins each run's metrics
    costs_path = metrics_dir / "costs.json"
    costs = json.loads(costs_path.read_text()) if costs_path.exists() else {}

    def run_metrics(run: str) -> str:
        return _run_metrics(run, {**summary[run], **costs.get(run, {})})

    if run_id is not None:
        if run_id not in summary:
            close = difflib.get_close_matches(run_id, summary, n=5, cutoff=0.5)
            hint = f"close: {', '.join(close)}" if close else f"{len(summary)} runs in {summary_path}"
            raise click.BadParameter(f"no run {run_id!r} ({hint})", param_hint="--run")
        click.echo(run_metrics(run_id))
        return
    if "main" in summary:
        click.echo(run_metrics("main") + "\n")
    index = metrics_dir / "tables" / "README.md"
    if index.exists():
        click.echo(index.read_text())
    click.echo(f"One table: robust report --table <id>. One run's metrics: robust report --run <id> "
               f"({len(summary)} runs in {summary_path}).")


# the pages aggregate writes beside the registered tables, named by study (and data set), not registered
GENERATED_PAGES = ("leaderboard-", "transfer-")


def _table_page(table_id: str, metrics_dir: Path) -> str:
    """A page of metrics/tables: a registered paper table, a leaderboard or a study's transfer matrix."""
    path = metrics_dir / "tables" / f"{table_id}.md"
    prefix = next((prefix for prefix in GENERATED_PAGES if table_id.startswith(prefix)), None)
    if prefix is not None:
        if not path.exists():
            pages = sorted(page.stem for page in path.parent.glob(f"{prefix}*.md"))
            raise click.BadParameter(f"no {path}; {prefix}* pages: {', '.join(pages) or 'none yet (run `dvc repro`)'}",
                                     param_hint="--table")
        return path.read_text()
    try:
        TABLES.get(table_id)
    except ConfigError as error:
        raise click.BadParameter(str(error).split(": ", 1)[1], param_hint="--table") from None
    if not path.exists():
        raise click.ClickException(f"{path} does not exist: run `dvc repro` first")
    return path.read_text()


def _run_metrics(run_id: str, values: dict[str, float | None]) -> str:
    """One run's metrics, one per line: a run has dozens, too many for the columns of a terminal."""
    rows = [[name, _fmt(value)] for name, value in sorted(values.items())]
    return f"run {run_id}\n" + tabulate(rows, headers=["metric", "value"], tablefmt="simple", disable_numparse=True)


@cli.command()
@click.option("--metrics", "metrics_dir", default="metrics", show_default=True,
              type=click.Path(path_type=Path, file_okay=False))
def audit(metrics_dir: Path) -> None:
    """List every violated sanity check (gradient masking, broken attacks, clean accuracy at chance); exit 1 if any."""
    path = metrics_dir / "results.parquet"
    if not path.exists():
        raise click.ClickException(f"{path} does not exist: run `dvc repro` first")
    results = pd.read_parquet(path)
    checks = results[results.metric.str.startswith("check_")]
    failed = violations(results)
    click.echo(f"{len(checks)} checks over {checks.run.nunique()} runs, {len(failed)} violated")
    if failed.empty:
        return
    columns = ["run", "source", "attack", "norm", "eps", "steps", "metric"]
    click.echo(tabulate(failed[columns], headers="keys", showindex=False, tablefmt="simple"))
    click.echo("\nWhat each check means: robust/sanity.py and robust/chance_level.py. Affected cells are marked "
               "⚠ in metrics/tables.")
    sys.exit(1)


@cli.command()
@click.option("--root", default=".", show_default=True, type=click.Path(path_type=Path, file_okay=False))
def check(root: Path) -> None:
    """Validate the pipeline index (datasets, bases, runs) before a long `dvc repro`, and say which stages
    dvc.lock does not record yet."""
    try:
        index, files = load_index(root)
        check_index(index, files)
        defined = defined_stages(root, index)
    except ValueError as error:  # a ConfigError of the index, or a foreach over a map the index lacks
        click.echo(f"error: {error}", err=True)
        sys.exit(2)
    click.echo(", ".join(f"{len(items)} {section}" for section, items in index.items()) + ": all references resolve")
    click.echo(_lock_line(defined, recorded_stages(root)))


def _lock_line(defined: set[str], recorded: set[str]) -> str:
    missing, stale = lock_coverage(defined, recorded)
    total = len(defined)
    if not missing and not stale:
        return f"dvc.lock records all {total} stages"
    if not recorded:
        return f"no dvc.lock entries yet: none of the {total} stages has run"
    lines = []
    if missing:
        # not an error: a stage added to dvc.yaml or a study has no entry until it first runs
        lines.append(f"dvc.lock does not record {len(missing)} of {total} stages (never run, or cut off by an "
                     f"interrupted lock update; `dvc repro` runs them): {_first(missing)}")
    if stale:
        noun = "stage" if len(stale) == 1 else "stages"
        lines.append(f"dvc.lock records {len(stale)} {noun} dvc.yaml no longer defines: {_first(stale)}")
    return "\n".join(lines)


def _first(names: list[str], shown: int = 5) -> str:
    return ", ".join(names[:shown]) + (f", … ({len(names) - shown} more)" if len(names) > shown else "")


def _fmt(value: float | int | None) -> str:
    if value is None:
        return "—"
    return str(value) if isinstance(value, int) else f"{value:.4f}"
