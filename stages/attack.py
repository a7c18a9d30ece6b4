"""DVC stage `attack`: evaluate one run under its attack suite into tidy parquet rows."""

from pathlib import Path

import click
from tabulate import tabulate

from robust.pipeline import attack_run
from robust.stage import stage, stage_params


@click.command()
@click.option("--params-file", required=True)
@click.option("--attack-key", required=True)
@click.option("--run-dir", required=True, type=click.Path(path_type=Path, exists=True))
@click.option("--data", "data_dir", required=True, type=click.Path(path_type=Path, exists=True))
@click.option("--out", required=True, type=click.Path(path_type=Path))
@stage
def main(params_file, attack_key, run_dir, data_dir, out) -> None:
    frame = attack_run(stage_params(params_file), attack_key, run_dir, data_dir, out)
    click.echo(tabulate(frame[["run", "attack", "eps", "metric", "value"]], headers="keys", showindex=False,
                        floatfmt=".4f"))


if __name__ == "__main__":
    main()
