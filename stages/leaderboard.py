"""DVC stage `leaderboard`: the cross-paper leaderboard pages (robust/leaderboard.py) from the aggregated
results and the wall-clock training cost of each leaderboard base."""

from pathlib import Path

import click
import pandas as pd

from robust.index import run_bases
from robust.leaderboard import write_leaderboards
from robust.stage import stage


@click.command()
@click.option("--results", "results_path", required=True, type=click.Path(path_type=Path, exists=True, dir_okay=False),
              help="the aggregated results, metrics/results.parquet")
@click.option("--costs", "costs_dir", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="the pretrain stage's cost files, data/costs/bases")
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path))
@stage
def main(results_path: Path, costs_dir: Path, out_dir: Path) -> None:
    written = write_leaderboards(pd.read_parquet(results_path), run_bases(), costs_dir, out_dir)
    click.echo("\n".join(f"wrote {path}" for path in written) or "no leaderboard runs in the results")


if __name__ == "__main__":
    main()
