"""DVC stage `aggregate`: all runs' rows (white-box and transfer) → results parquet, summary.json, paper
tables, the cross-paper leaderboards and the plot data of `dvc plots` (ε sweeps, tables swept over a setting,
training curves)."""

from pathlib import Path

import click

from robust.aggregate import aggregate, run_table
from robust.index import load_index
from robust.stage import stage


@click.command()
@click.argument("results_dirs", nargs=-1, required=True, type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--results-out", required=True, type=click.Path(path_type=Path))
@click.option("--summary", "summary_out", required=True, type=click.Path(path_type=Path))
@click.option("--tables", "tables_dir", required=True, type=click.Path(path_type=Path))
@click.option("--plots", "plots_dir", required=True, type=click.Path(path_type=Path))
@click.option("--sweeps", "sweeps_dir", type=click.Path(path_type=Path), default=None,
              help="where the tables swept over a setting (e.g. λ) write their curves")
@click.option("--training", "training_dir", type=click.Path(path_type=Path), default=None,
              help="where the training curves (pretraining + fine-tune, one file per study) go; needs --bases, --runs")
@click.option("--bases", "bases_dir", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="the pretrain stage's outputs, data/bases")
@click.option("--runs", "runs_dir", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="the fine-tune stage's outputs, data/runs")
@click.option("--prepared", "prepared_dir", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="the prepare stage's outputs, data/prepared: whose manifests give each run's chance accuracy")
@click.option("--costs", "costs_dir", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="the pretrain stage's cost files, data/costs/bases: the leaderboards' training-cost column")
@stage
def main(results_dirs, results_out, summary_out, tables_dir, plots_dir, sweeps_dir, training_dir, bases_dir,
         runs_dir, prepared_dir, costs_dir) -> None:
    """Collect the parquet files under every RESULTS_DIR (white-box results; transfer results in transfer/)."""
    if training_dir is not None and None in (bases_dir, runs_dir):
        raise click.UsageError("--training needs --bases and --runs")
    # the run → base and run → dataset maps come from the same index dvc.yaml iterates over (params.yaml, studies)
    needs_index = any(option is not None for option in (training_dir, prepared_dir, costs_dir))
    index = load_index(Path("."))[0] if needs_index else None
    paths = sorted(path for directory in results_dirs for path in directory.rglob("*.parquet"))
    frame = aggregate(paths, results_out=results_out, summary_out=summary_out, tables_dir=tables_dir,
                      plots_dir=plots_dir, sweeps_dir=sweeps_dir, training_dir=training_dir, bases_dir=bases_dir,
                      runs_dir=runs_dir, prepared_dir=prepared_dir, costs_dir=costs_dir, index=index)
    click.echo(run_table(frame, "main"))


if __name__ == "__main__":
    main()
