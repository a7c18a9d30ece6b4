"""DVC stage `attack`: evaluate one run under its attack suite and sanity checks into tidy parquet rows."""

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
@click.option("--adversarial-out", required=True, type=click.Path(path_type=Path),
              help="where the examples of the config's `transfer` attacks are saved")
@stage
def main(params_file, attack_key, run_dir, data_dir, out, adversarial_out) -> None:
    frame = attack_run(stage_params(params_file), attack_key, run_dir, data_dir, out, adversarial_out)
    shown = frame[frame.metric.isin(["accuracy", "rho_adv", "auc"]) | frame.metric.str.startswith("check_")]
    click.echo(tabulate(shown[["run", "attack", "norm", "eps", "steps", "metric", "value"]], headers="keys",
                        showindex=False, floatfmt=".4f"))


if __name__ == "__main__":
    main()
