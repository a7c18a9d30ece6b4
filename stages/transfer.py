"""DVC stage `transfer`: one run classifies the transfer examples of every run of its study."""

from pathlib import Path

import click
from tabulate import tabulate

from robust.index import check_transfer_batch_size
from robust.params import lookup
from robust.pipeline import transfer_run
from robust.stage import stage, stage_params


@click.command()
@click.option("--params-file", required=True)
@click.option("--attack-key", required=True)
@click.option("--run-dir", required=True, type=click.Path(path_type=Path, exists=True))
@click.option("--data", "data_dir", required=True, type=click.Path(path_type=Path, exists=True))
@click.option("--sources", "sources_dir", required=True, type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--out", required=True, type=click.Path(path_type=Path))
@stage
def main(params_file, attack_key, run_dir, data_dir, sources_dir, out) -> None:
    params = stage_params(params_file)
    check_transfer_batch_size(lookup(params, attack_key), attack_key)
    frame = transfer_run(params, attack_key, run_dir, data_dir, sources_dir, out)
    if not frame.empty:
        click.echo(tabulate(frame[["source", "run", "attack", "eps", "metric", "value"]], headers="keys",
                            showindex=False, floatfmt=".4f"))


if __name__ == "__main__":
    main()
