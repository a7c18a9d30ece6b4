"""The ``robust`` command: read what the pipeline wrote in metrics/."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
import pandas as pd
from tabulate import tabulate

from robust.errors import ConfigError
from robust.index import check_index, load_index
from robust.sanity import violations
from robust.tables import TABLES


@click.group()
def cli() -> None:
    """Reproducible adversarial-robustness defenses (run the pipeline with `dvc repro`)."""


@cli.command()
@click.option("--table", "table_id", default=None,
              help="print one paper table, e.g. jakubovitz2018-table3, or a leaderboard, e.g. leaderboard-digits")
@click.option("--metrics", "metrics_dir", default="metrics", show_default=True,
              type=click.Path(path_type=Path, file_okay=False))
def report(table_id: str | None, metrics_dir: Path) -> None:
    """Print the summary of every run, or one paper table beside the paper's numbers."""
    if table_id is not None and table_id.startswith("leaderboard-"):
        path = metrics_dir / "leaderboard" / f"{table_id}.md"
        if not path.exists():
            pages = sorted(page.stem for page in (metrics_dir / "leaderboard").glob("leaderboard-*.md"))
            raise click.BadParameter(f"no {path}; leaderboards: {', '.join(pages) or 'none yet (run `dvc repro`)'}",
                                     param_hint="--table")
        click.echo(path.read_text())
        return
    if table_id is not None:
        try:
            TABLES.get(table_id)
        except ConfigError as error:
            raise click.BadParameter(str(error).split(": ", 1)[1], param_hint="--table") from None
        path = metrics_dir / "tables" / f"{table_id}.md"
        if not path.exists():
            raise click.ClickException(f"{path} does not exist: run `dvc repro` first")
        click.echo(path.read_text())
        return
    summary_path = metrics_dir / "summary.json"
    if not summary_path.exists():
        raise click.ClickException(f"{summary_path} does not exist: run `dvc repro` first")
    summary = json.loads(summary_path.read_text())
    metrics = sorted({name for values in summary.values() for name in values})
    rows = [[run, *(_fmt(values.get(name)) for name in metrics)] for run, values in sorted(summary.items())]
    click.echo(tabulate(rows, headers=["run", *metrics], tablefmt="simple"))
    for index in (metrics_dir / "tables" / "README.md", metrics_dir / "leaderboard" / "README.md"):
        if index.exists():
            click.echo("\n" + index.read_text())


@cli.command()
@click.option("--metrics", "metrics_dir", default="metrics", show_default=True,
              type=click.Path(path_type=Path, file_okay=False))
def audit(metrics_dir: Path) -> None:
    """List every violated sanity check (gradient masking, broken attacks); exit code 1 if any."""
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
    click.echo("\nWhat each check means: robust/sanity.py. Affected cells are marked ⚠ in metrics/tables.")
    sys.exit(1)


@cli.command()
@click.option("--root", default=".", show_default=True, type=click.Path(path_type=Path, file_okay=False))
def check(root: Path) -> None:
    """Validate the pipeline index (datasets, bases, runs) before a long `dvc repro`."""
    try:
        index, files = load_index(root)
        check_index(index, files)
    except ConfigError as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(2)
    click.echo(", ".join(f"{len(items)} {section}" for section, items in index.items()) + ": all references resolve")


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"
