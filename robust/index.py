"""The pipeline index: the ``datasets``, ``bases``, ``runs`` and ``transfer_runs`` maps dvc.yaml iterates over.

params.yaml and every study file listed under ``vars:`` in dvc.yaml contribute entries; DVC
merges them. A run naming a base that does not exist only surfaces in DVC as a missing
dependency path, so ``check_index`` (``robust check``) validates the references first and
names the params key at fault, with the allowed values.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import yaml

from robust.errors import ConfigError
from robust.params import load_params, lookup, require_mapping

INDEX_FIELDS = {
    "datasets": {"params_file", "key"},
    "bases": {"params_file", "key", "dataset"},
    "runs": {"params_file", "defense_key", "finetune_key", "attack_key", "base", "dataset", "study"},
}


def load_index(root: Path = Path(".")) -> tuple[dict[str, dict], dict[str, dict]]:
    """The merged index and every params file's contents, by file name (as dvc.yaml names them)."""
    files = {"params.yaml": load_params(root / "params.yaml")}
    dvc = yaml.safe_load((root / "dvc.yaml").read_text()) or {}
    for name in dvc.get("vars", []):
        if isinstance(name, str):
            files[name] = load_params(root / name)
    index: dict[str, dict] = {section: {} for section in (*INDEX_FIELDS, "transfer_runs", "figures", "study_figures")}
    for name, params in files.items():
        for section in index:
            for item, fields in require_mapping(params.get(section, {}), f"{name}:{section}").items():
                index[section][item] = {"_file": name, **require_mapping(fields, f"{section}.{item}")}
    return index, files


def run_bases(index: Mapping[str, Mapping]) -> dict[str, str]:
    """Each run of ``index`` (as ``load_index`` gives it) → the base it was trained from, whose cost and
    history are its pretraining."""
    return {run: fields["base"] for run, fields in index["runs"].items()}


def check_index(index: Mapping[str, dict], files: Mapping[str, dict]) -> None:
    """Raise ``ConfigError`` for the first broken reference of the index, naming its key."""
    for section, required in INDEX_FIELDS.items():
        for item, fields in index[section].items():
            for field in sorted(required - set(fields)):
                raise ConfigError(f"{section}.{item}.{field}", "missing")
            params_file = fields["params_file"]
            if params_file not in files:
                raise ConfigError(f"{section}.{item}.params_file", f"{params_file!r} is not params.yaml or a "
                                  "file under vars: in dvc.yaml", sorted(files))
            params = {**files["params.yaml"], **files[params_file]}
            for field in sorted(f for f in fields if f == "key" or f.endswith("_key")):
                lookup(params, fields[field])  # ConfigError naming the missing key
            references = {"dataset": "datasets", "base": "bases"}
            for field, target in references.items():
                if field in fields and fields[field] not in index[target]:
                    raise ConfigError(f"{section}.{item}.{field}", f"no {target} entry {fields[field]!r}",
                                      sorted(index[target]))
    # a figure is drawn from a run's saved examples: its key is the run, in the run's study
    for run, fields in index["figures"].items():
        if run not in index["runs"]:
            raise ConfigError(f"figures.{run}", "no runs entry of that name", sorted(index["runs"]))
        if fields.get("study") != index["runs"][run]["study"] or fields.get("dataset") != index["runs"][run]["dataset"]:
            raise ConfigError(f"figures.{run}", f"study and dataset must be the run's: "
                              f"{index['runs'][run]['study']!r}, {index['runs'][run]['dataset']!r}")
    # a study figure compares several runs: each must exist and share the figure's dataset
    for figure, fields in index["study_figures"].items():
        runs = require_mapping(fields.get("runs", {}), f"study_figures.{figure}.runs")
        for run in runs:
            if run not in index["runs"]:
                raise ConfigError(f"study_figures.{figure}.runs", f"no runs entry {run!r}", sorted(index["runs"]))
            if index["runs"][run]["dataset"] != fields.get("dataset"):
                raise ConfigError(f"study_figures.{figure}.dataset", f"must be the dataset of run {run!r}: "
                                  f"{index['runs'][run]['dataset']!r}")
    _check_transfer_runs(index, files)


def saves_transfer_examples(attack: Mapping) -> bool:
    """Whether an attack config saves examples for its study's transfer matrix, at any profile."""
    overrides = require_mapping(attack.get("profiles", {}), "profiles").values()
    return bool(attack.get("transfer")) or any(bool(override and override.get("transfer")) for override in overrides)


def _check_transfer_runs(index: Mapping[str, dict], files: Mapping[str, dict]) -> None:
    # dvc.yaml's transfer stage iterates over `transfer_runs`: a study whose runs save transfer examples
    # needs every run there (each is one column of its matrix), and a study that saves none needs none
    # (each stage would classify nothing, and cost a rewrite of dvc.lock)
    runs = index["runs"]
    for run, fields in index["transfer_runs"].items():
        if run not in runs:
            raise ConfigError(f"transfer_runs.{run}", "no runs entry of that name", sorted(runs))
        if fields != runs[run]:
            raise ConfigError(f"transfer_runs.{run}", "must be the runs entry of the same name: "
                              "`transfer_runs: *runs` in the study file")
    saving = set()
    for run, fields in runs.items():
        params = {**files["params.yaml"], **files[fields["params_file"]]}
        attack = require_mapping(lookup(params, fields["attack_key"]), fields["attack_key"])
        if saves_transfer_examples(attack):
            saving.add(fields["study"])
        if run in index["transfer_runs"]:
            check_transfer_batch_size(attack, fields["attack_key"])
    for run, fields in runs.items():
        listed = run in index["transfer_runs"]
        if fields["study"] in saving and not listed:
            raise ConfigError("transfer_runs", f"study {fields['study']!r} saves transfer examples, but its run "
                              f"{run!r} is not listed: its matrix would lack that column; add `transfer_runs: *runs`")
        if listed and fields["study"] not in saving:
            raise ConfigError(f"transfer_runs.{run}", f"no run of study {fields['study']!r} saves transfer "
                              "examples (its attack configs have no `transfer`): its stage would classify nothing")


def check_transfer_batch_size(attack: Mapping, attack_key: str) -> None:
    """dvc.yaml's transfer stage tracks ``<attack_key>.batch_size`` alone (the attack's other settings shape
    the examples it classifies, a dependency of their own), so the batch size must be that key, at every profile."""
    if "batch_size" not in attack:
        raise ConfigError(f"{attack_key}.batch_size", "missing: the transfer stage of a run with this attack "
                          "config tracks it (dvc.yaml)")
    for profile, override in require_mapping(attack.get("profiles", {}), f"{attack_key}.profiles").items():
        if override and "batch_size" in override:
            raise ConfigError(f"{attack_key}.profiles.{profile}.batch_size", "the transfer stage tracks only "
                              f"{attack_key}.batch_size: set the batch size there")
