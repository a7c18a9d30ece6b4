"""DVC stage `figures`: the adversarial-example grid of one run (adversary critic, Fig. 4) as a PNG."""

from pathlib import Path

import click

from robust.figures import run_figures
from robust.stage import stage


@click.command()
@click.option("--run-dir", required=True, type=click.Path(path_type=Path, exists=True))
@click.option("--adversarial", "adversarial_file", required=True, type=click.Path(path_type=Path, exists=True),
              help="the run's saved transfer examples (must hold deepfool and high_confidence)")
@click.option("--data", "data_dir", required=True, type=click.Path(path_type=Path, exists=True))
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path))
@stage
def main(run_dir: Path, adversarial_file: Path, data_dir: Path, out_dir: Path) -> None:
    click.echo(f"wrote {run_figures(run_dir, adversarial_file, data_dir, out_dir)}")


if __name__ == "__main__":
    main()
