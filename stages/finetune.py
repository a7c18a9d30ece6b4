"""DVC stage `defense-finetune`: apply one run's defense as post-processing of its base.

Launched with ``torchrun --nproc-per-node N --`` instead of ``python``, it trains data-parallel
over N processes (``robust.distributed``); rank 0 writes the outputs.
"""

from pathlib import Path

import click

from robust.distributed import is_main, process_group
from robust.pipeline import device, finetune_run
from robust.stage import stage, stage_params


@click.command()
@click.option("--run", "name", required=True, help="run id (the foreach key)")
@click.option("--study", required=True)
@click.option("--params-file", required=True)
@click.option("--defense-key", required=True)
@click.option("--finetune-key", required=True)
@click.option("--base", "base_dir", required=True, type=click.Path(path_type=Path, exists=True))
@click.option("--data", "data_dir", required=True, type=click.Path(path_type=Path, exists=True))
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path))
@click.option("--cost-out", type=click.Path(path_type=Path), default=None,
              help="wall-clock seconds per epoch (JSON), outside the output folder; default: <out>.cost.json")
@stage
def main(name, study, params_file, defense_key, finetune_key, base_dir, data_dir, out_dir, cost_out) -> None:
    params = stage_params(params_file)
    with process_group(device(params)):
        history = finetune_run(params, defense_key, finetune_key, base_dir, data_dir, out_dir, name=name, study=study,
                               cost_out=cost_out)
        if is_main():
            # 0 epochs: the run evaluates its base as it was trained
            click.echo(f"run {name}: the base unchanged (0 epochs)" if history.empty else
                       f"run {name}: held-out accuracy {history.held_out_accuracy.iloc[-1]:.4f}")


if __name__ == "__main__":
    main()
