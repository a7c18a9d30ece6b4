"""What each DVC stage does, as plain functions; ``stages/*.py`` only parse paths and call these.

Outputs of a stage are written atomically. Training checkpoints for resuming live under
``data/.resume/`` (outside DVC's outputs, so DVC never mistakes them for results).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd
import torch

from robust import data
from robust.attacks.noise import StationaryCovariance
from robust.defenses import build_defense
from robust.device import describe, resolve_device
from robust.distributed import is_main, local_device
from robust.errors import ConfigError
from robust.evaluate import AttackSpec, evaluate, fixed_subset, parse_suite, predictions
from robust.io import load_torch, save_json, save_parquet, save_torch
from robust.models import build_model
from robust.models.head import FIXED_KEY, fix_orthonormal
from robust.params import (
    check_keys,
    lookup,
    profile_overrides,
    profile_settings,
    require_mapping,
    require_number,
    seed_of,
)
from robust.perturbation_structure import data_profile
from robust.representation import check_splittable, parse_representation, representation_rows
from robust.results import RESULT_COLUMNS
from robust.sanity import large_eps_check, large_eps_settings, suite_checks
from robust.train import TrainConfig, seed_everything, train
from robust.transfer import load_sources, save_adversarial, transfer_rows

log = logging.getLogger(__name__)
RESUME_DIR = Path("data/.resume")


def device(params: Mapping) -> torch.device:
    """The params' ``device`` (auto when absent); in a torchrun launch, this process's GPU."""
    return local_device(resolve_device(params.get("device", "auto")))


DATA_SIZES = ("max_train", "max_test")
DATA_COVARIANCE_BATCH = 500  # images per FFT batch when estimating the training data's covariance function


def prepare_dataset(params: Mapping, data_key: str, out_dir: Path) -> dict:
    """Load the dataset named at ``data_key`` and write its (profile-sized) tensors + manifest.

    ``<data_key>.profiles.<profile>`` may replace, for one profile, the dataset (``name``, ``root``)
    and the profile's subset sizes (``max_train``, ``max_test``): a CIFAR-10 study reads CIFAR-10
    at the cpu and paper profiles and the embedded digits at smoke, where nothing is downloaded.
    """
    config = require_mapping(lookup(params, data_key), data_key)
    check_keys(config, data_key, {"name", "root", "profiles"}, {"name"})
    profile, settings = profile_settings(params)
    own = profile_overrides(config, data_key, profile, {"name", "root", *DATA_SIZES})
    sizes = {}
    for split in DATA_SIZES:
        key = f"{data_key}.profiles.{profile}.{split}" if split in own else f"profiles.{profile}.{split}"
        sizes[split] = own.get(split, settings.get(split))
        if sizes[split] is not None:
            require_number(sizes[split], key, low=1, integer=True)
    config = {**config, **own}
    try:
        return data.prepare(config["name"], out_dir, root=config.get("root"), seed=seed_of(params), **sizes)
    except ConfigError as error:  # the loaders name the main run's `data`; a study's dataset lives elsewhere
        raise error.under("data", data_key) from error


def load_model(path: Path, on: torch.device) -> tuple[torch.nn.Module, dict]:
    state = load_torch(path)
    config = state["config"]
    model = build_model(config["arch"], in_shape=config["in_shape"], num_classes=config["num_classes"],
                        width=config["width"])
    model.load_state_dict(state["model"])
    fix_orthonormal(model, config.get(FIXED_KEY, 0), initialise=False)
    return model.to(on).eval(), config


def defense_config(params: Mapping, key: str, default: Mapping | None = None) -> dict:
    """The defense mapping at ``key`` with its own replacements for the active profile applied.

    ``<key>.profiles.<profile>`` may replace, for one profile, a setting the mapping states,
    e.g. a random-projection estimate where the exact penalty is out of a profile's reach.
    """
    config = dict(require_mapping(lookup(params, key) if default is None else lookup(params, key, default), key))
    profile, _ = profile_settings(params)
    own = profile_overrides(config, key, profile, set(config) - {"name", "profiles"})
    config.pop("profiles", None)
    return {**config, **own}


SCALE_KEYS = {"epochs", "batch_size", "lr", "milestones", "gamma", "lr_decay"}
# a base may narrow its own network for one profile (a WRN-34-10 at the cpu profile) under profiles.<p>
BASE_SCALE_KEYS = {"width"}
OPTIMIZER_KEYS = {"optimizer", "momentum", "beta1", "rho"}
ATTACK_SETTINGS = {"suite", "batch_size", "transfer", "sanity", "representation"}


def _train_config(params: Mapping, phase: str, key: str) -> TrainConfig:
    """Merge the phase's settings (optimizer, l2) with the profile's scale (epochs, batch, lr).

    A config may override the profile's scale for itself under ``profiles.<profile>`` (a
    paper whose schedule differs from the main experiment's) and set its own ``seed``
    (repeated runs of one row); its own ``epochs`` overrides every profile's (0: evaluate the
    base as it was trained).
    """
    profile, settings = profile_settings(params)
    scale = require_mapping(lookup(settings, phase), f"profiles.{profile}.{phase}")
    check_keys(scale, f"profiles.{profile}.{phase}", SCALE_KEYS, {"epochs", "batch_size", "lr"})
    own = require_mapping(lookup(params, key), key)
    allowed = SCALE_KEYS | BASE_SCALE_KEYS if phase == "pretrain" else SCALE_KEYS
    overrides = {k: v for k, v in profile_overrides(own, key, profile, allowed).items() if k in SCALE_KEYS}
    seed = own.get("seed", seed_of(params))
    require_number(seed, f"{key}.seed", low=0, integer=True)
    return TrainConfig.from_params(key=key, seed=int(seed), **{**scale, **overrides, **{
        k: v for k, v in own.items() if k in OPTIMIZER_KEYS | {"l2", "epochs", "amp", "augment"}}})


def pretrain_base(params: Mapping, base_key: str, data_dir: Path, out_dir: Path, *, name: str,
                  cost_out: Path | None = None) -> pd.DataFrame:
    """Training of a base model from scratch: plain, or with the config's ``defense`` ("regular" training)."""
    config = require_mapping(lookup(params, base_key), base_key)
    check_keys(config, base_key, OPTIMIZER_KEYS | {"arch", "l2", "amp", "augment", "defense", "seed", "profiles",
                                                   FIXED_KEY}, {"arch"})
    base_defense = defense_config(params, f"{base_key}.defense", default={"name": "none"})
    defense = build_defense(base_defense, key=f"{base_key}.defense")
    fixed = int(require_number(config.get(FIXED_KEY, 0), f"{base_key}.{FIXED_KEY}", low=0, high=2, integer=True))
    train_config = _train_config(params, "pretrain", base_key)
    profile, settings = profile_settings(params)
    own_width = profile_overrides(config, base_key, profile, SCALE_KEYS | BASE_SCALE_KEYS).get("width")
    width = (require_number(own_width, f"{base_key}.profiles.{profile}.width", low=0) if own_width is not None
             else require_number(settings.get("width", 1.0), f"profiles.{profile}.width", low=0))
    manifest = data.load_manifest(data_dir)
    seed_everything(train_config.seed)
    model_config = {"arch": config["arch"], "in_shape": list(manifest["shape"]), "num_classes": manifest["num_classes"],
                    "width": float(width),
                    "dataset": manifest["name"], "profile": profile, "base": name,
                    "base_defense": base_defense, "seed": train_config.seed}
    if fixed:  # absent from older checkpoints' configs, which then fix nothing
        model_config[FIXED_KEY] = fixed
    model = build_model(config["arch"], in_shape=model_config["in_shape"], num_classes=model_config["num_classes"],
                        width=model_config["width"])
    fix_orthonormal(model, fixed, initialise=True, key=f"{base_key}.{FIXED_KEY}")
    model = model.to(device(params))
    x, y = data.load_split(data_dir, "train")
    held_out = data.load_split(data_dir, "test")
    history, seconds = train(model, defense, x, y, train_config, held_out=held_out,
                             checkpoint=RESUME_DIR / f"base-{name}.pt", desc=f"pretrain {name}",
                             resume_tag=_resume_tag(model_config, data_dir))
    _save_training(out_dir, model, model_config, history, seconds, cost_out)
    return history


def finetune_run(params: Mapping, defense_key: str, finetune_key: str, base_dir: Path, data_dir: Path,
                 out_dir: Path, *, name: str, study: str, cost_out: Path | None = None) -> pd.DataFrame:
    """Post-processing training: load the base, apply the defense for the profile's epochs."""
    run_defense = defense_config(params, defense_key)
    defense = build_defense(run_defense, key=defense_key)
    check_keys(require_mapping(lookup(params, finetune_key), finetune_key), finetune_key,
               OPTIMIZER_KEYS | {"epochs", "amp", "augment", "profiles"})
    train_config = _train_config(params, "finetune", finetune_key)
    seed_everything(train_config.seed)
    model, model_config = load_model(base_dir / "model.pt", device(params))
    # a run that trains for 0 epochs evaluates its base: the base's defense is the one that shaped it
    shaped_by = run_defense if train_config.epochs else model_config.get("base_defense", {"name": "none"})
    model_config = {**model_config, "run": name, "study": study, "defense": shaped_by}
    x, y = data.load_split(data_dir, "train")
    held_out = data.load_split(data_dir, "test")
    history, seconds = train(model, defense, x, y, train_config, held_out=held_out,
                             checkpoint=RESUME_DIR / f"run-{name}.pt", desc=f"finetune {name}",
                             resume_tag=_resume_tag({**model_config, "defense": run_defense}, data_dir,
                                                    base_dir / "model.pt"))
    _save_training(out_dir, model, model_config, history, seconds, cost_out)
    return history


def _resume_tag(model_config: dict, data_dir: Path, start: Path | None = None) -> str:
    """What, besides the train config, a resume checkpoint must match: model, defense, data, starting weights."""
    digests = {"data": data.load_manifest(data_dir)["sha256"]}
    if start is not None:
        digests["start"] = hashlib.sha256(start.read_bytes()).hexdigest()
    return json.dumps({**model_config, **digests}, sort_keys=True, default=str)


def _save_training(out_dir: Path, model, model_config: dict, history: pd.DataFrame, seconds: list[float],
                   cost_out: Path | None) -> None:
    if not is_main():  # in a multi-process run every process holds the same model: rank 0 writes it
        return
    save_torch({"model": model.state_dict(), "config": model_config}, out_dir / "model.pt")
    save_parquet(history, out_dir / "history.parquet")
    # Wall-clock time differs on every run: it stays out of the parquet files and out of the
    # output folder, whose hash the later stages depend on, so that a rerun that reproduces the
    # model byte for byte reruns nothing after it.
    # what the time was measured on, for comparing it with another run's (docs/determinism.md)
    save_json({"seconds_per_epoch": sum(seconds) / max(len(seconds), 1), "epochs_timed": len(seconds),
               **describe(next(model.parameters()).device)},
              cost_out or out_dir.with_name(f"{out_dir.name}.cost.json"))


def _attack_settings(params: Mapping, attack_key: str) -> tuple[dict, int, int | None]:
    """The run's attack config, its batch size and the profile's evaluation subset size."""
    config = require_mapping(lookup(params, attack_key), attack_key)
    check_keys(config, attack_key, ATTACK_SETTINGS | {"profiles"}, {"suite"})
    profile, settings = profile_settings(params)
    # a study may replace entries for one profile, e.g. a cheaper C&W where only the wiring is checked
    config = {**config, **profile_overrides(config, attack_key, profile, ATTACK_SETTINGS)}
    n = settings.get("eval_examples")
    if n is not None:
        require_number(n, f"profiles.{profile}.eval_examples", low=1, integer=True)
    batch_size = int(require_number(config.get("batch_size", 500), f"{attack_key}.batch_size", low=1, integer=True))
    return config, batch_size, n


def _evaluation_subset(data_dir: Path, n: int | None, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    x, y = data.load_split(data_dir, "test")
    subset = fixed_subset(len(y), n, seed)
    return x[subset], y[subset], subset


def _frame(rows: list[dict], model_config: dict, profile: str, seed: int) -> pd.DataFrame:
    # the seed that trained the base tells repeated runs of one row apart; evaluation uses ``seed``
    meta = {"run": model_config["run"], "study": model_config["study"], "dataset": model_config["dataset"],
            "arch": model_config["arch"], "defense": model_config["defense"]["name"], "profile": profile,
            "seed": model_config.get("seed", seed)}
    return pd.DataFrame([{**meta, "source": "", **row} for row in rows], columns=RESULT_COLUMNS)


def with_data_covariance(suite: Sequence[AttackSpec], data_dir: Path) -> list[AttackSpec]:
    """The suite with every ``lrc`` entry of ``covariance: data`` given the prepared training images'
    covariance function (SGR §4.3: "the covariance matrix computed from the CIFAR10 training set")."""
    def wants_data(spec: AttackSpec) -> bool:
        return spec.name == "lrc" and spec.settings.get("covariance") == "data"

    if not any(wants_data(spec) for spec in suite):
        return list(suite)
    images, _ = data.load_split(data_dir, "train")
    profile = data_profile(images, batch_size=DATA_COVARIANCE_BATCH)
    covariance = StationaryCovariance(profile.intra, profile.inter, tuple(images.shape[1:]))
    return [dataclasses.replace(spec, settings={**spec.settings, "covariance": covariance}) if wants_data(spec)
            else spec for spec in suite]


def attack_run(params: Mapping, attack_key: str, run_dir: Path, data_dir: Path, out: Path,
               adversarial_out: Path) -> pd.DataFrame:
    """Evaluate a trained run under its attack suite and sanity checks; one tidy row per metric.

    The adversarial examples of the config's ``transfer`` attacks are saved to
    ``adversarial_out`` for the transfer stage of the study's runs.
    """
    config, batch_size, n = _attack_settings(params, attack_key)
    suite = with_data_covariance(parse_suite(config["suite"], f"{attack_key}.suite"), data_dir)
    transfer = parse_suite(config["transfer"], f"{attack_key}.transfer") if config.get("transfer") else []
    large_eps, max_accuracy = large_eps_settings(config.get("sanity"), f"{attack_key}.sanity")
    representation = (parse_representation(config["representation"], f"{attack_key}.representation")
                      if config.get("representation") is not None else None)
    seed = seed_of(params)
    seed_everything(seed)
    model, model_config = load_model(run_dir / "model.pt", device(params))
    if representation is not None:
        check_splittable(model, f"{attack_key}.representation")
    x, y, subset = _evaluation_subset(data_dir, n, seed)
    extra = [spec for spec in transfer if spec not in suite]
    for spec in extra:
        if any(spec.identity == other.identity for other in suite):
            raise ConfigError(f"{attack_key}.transfer", f"a {spec.name} entry matches a suite entry's norm, ε and "
                              "steps but not its other settings: give it a distinct label")
    result = evaluate(model, x, y, [*suite, *extra], batch_size=batch_size, seed=seed, keep=transfer)
    rows = result.rows + large_eps_check(model, x, y, result, large_eps, max_accuracy, batch_size=batch_size,
                                         seed=seed)
    rows += suite_checks(rows)
    if representation is not None:  # AFD's representation sensitivity and dimensionality (Fig. 4, Table A5)
        rows += representation_rows(model, x, y, representation, batch_size=batch_size, seed=seed)
    frame = _frame(rows, model_config, profile_settings(params)[0], seed)
    save_adversarial(result.outcomes, subset, adversarial_out,
                     predict=lambda x_adv: predictions(model, x_adv, batch_size))
    save_parquet(frame, out)
    return frame


def transfer_run(params: Mapping, attack_key: str, run_dir: Path, data_dir: Path, sources_dir: Path,
                 out: Path) -> pd.DataFrame:
    """Classify every study run's transfer examples with this run's model: one column of the matrix."""
    _, batch_size, n = _attack_settings(params, attack_key)
    seed = seed_of(params)
    model, model_config = load_model(run_dir / "model.pt", device(params))
    x, y, subset = _evaluation_subset(data_dir, n, seed)
    rows = transfer_rows(model, x, y, subset, load_sources(sources_dir), target=model_config["run"],
                         batch_size=batch_size)
    frame = _frame(rows, model_config, profile_settings(params)[0], seed)
    save_parquet(frame, out)
    return frame
