"""DVC stage `aggregate`: all runs' rows (white-box and transfer) → results parquet, summary.json, paper
tables and the ε-sweep data of `dvc plots`."""

from pathlib import Path

import click

from robust.aggregate import aggregate, run_table
from robust.stage import stage


@click.command()
@click.argument("results_dirs", nargs=-1, required=True, type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--results-out", required=True, type=click.Path(path_type=Path))
@click.option("--summary", "summary_out", required=True, type=click.Path(path_type=Path))
@click.option("--tables", "tables_dir", required=True, type=click.Path(path_type=Path))
@click.option("--plots", "plots_dir", required=True, type=click.Path(path_type=Path))
@stage
def main(results_dirs, results_out, summary_out, tables_dir, plots_dir) -> None:
    """Collect the parquet files of every RESULTS_DIR (white-box results, transfer results)."""
    paths = sorted(path for directory in results_dirs for path in directory.glob("*.parquet"))
    frame = aggregate(paths, results_out=results_out, summary_out=summary_out, tables_dir=tables_dir,
                      plots_dir=plots_dir)
    click.echo(run_table(frame, "main"))


if __name__ == "__main__":
    main()
