"""DVC stage `prepare`: write one dataset's tensors and manifest under data/prepared/."""

from pathlib import Path

import click

from robust.pipeline import prepare_dataset
from robust.stage import stage, stage_params


@click.command()
@click.option("--params-file", required=True, help="params file holding the data key")
@click.option("--data-key", required=True, help="dotted key of the data config, e.g. data")
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path))
@stage
def main(params_file: str, data_key: str, out_dir: Path) -> None:
    manifest = prepare_dataset(stage_params(params_file), data_key, out_dir)
    click.echo(f"prepared {manifest['name']}: {manifest['counts']}")


if __name__ == "__main__":
    main()
