"""DVC stage `pretrain`: train one base model (no defense) on its prepared dataset.

Launched with ``torchrun --nproc-per-node N --`` instead of ``python``, it trains data-parallel
over N processes (``robust.distributed``); rank 0 writes the outputs.
"""

from pathlib import Path

import click

from robust.distributed import is_main, process_group
from robust.pipeline import device, pretrain_base
from robust.stage import stage, stage_params


@click.command()
@click.option("--base", "name", required=True, help="base id (the foreach key)")
@click.option("--params-file", required=True)
@click.option("--base-key", required=True, help="dotted key of the base's pretrain config")
@click.option("--data", "data_dir", required=True, type=click.Path(path_type=Path, exists=True))
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path))
@click.option("--cost-out", type=click.Path(path_type=Path), default=None,
              help="wall-clock seconds per epoch (JSON), outside the output folder; default: <out>.cost.json")
@stage
def main(name: str, params_file: str, base_key: str, data_dir: Path, out_dir: Path, cost_out: Path | None) -> None:
    params = stage_params(params_file)
    with process_group(device(params)):
        history = pretrain_base(params, base_key, data_dir, out_dir, name=name, cost_out=cost_out)
        if is_main():
            click.echo(f"base {name}: held-out accuracy {history.held_out_accuracy.iloc[-1]:.4f}")


if __name__ == "__main__":
    main()
