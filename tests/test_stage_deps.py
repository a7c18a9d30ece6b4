"""dvc.yaml's training stages name every module whose logic shapes a trained model.

A module missing from a stage's deps means an edit to it reruns nothing and the committed
results silently stop matching the code. The trainer's own imports are the modules a
training run executes besides the defenses, models and attacks (declared as folders).
"""
from __future__ import annotations

import ast
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]

# Imports of robust/train.py that cannot change a trained model on one process: why each is left out.
TRAINING_PLUMBING = {
    "robust.io": "atomic writes of checkpoints and histories",
    "robust.errors": "the type of a configuration error",
    "robust.params": "type checks of config values; the values are tracked params",
    "robust.device": "whether bf16 autocast is available; amp is itself a tracked setting",
    "robust.distributed": "gradient averaging across torchrun processes; a no-op on one process",
}


def robust_imports(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("robust."):
            modules.add(node.module)
        elif isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names if alias.name.startswith("robust."))
    return modules


def stage_deps(stage: str) -> list[str]:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"][stage]["do"]["deps"]


def covered(module: str, deps: list[str]) -> bool:
    path = module.replace(".", "/")
    return any(dep in (f"{path}.py", path) or path.startswith(dep.rstrip("/") + "/") for dep in deps)


def test_plumbing_list_names_only_what_the_trainer_imports():
    assert set(TRAINING_PLUMBING) <= robust_imports(ROOT / "robust/train.py")


def test_training_stages_depend_on_every_module_the_trainer_runs():
    needed = robust_imports(ROOT / "robust/train.py") - set(TRAINING_PLUMBING)
    assert "robust.augment" in needed  # the import this check exists for
    for stage in ("pretrain", "defense-finetune"):
        deps = stage_deps(stage)
        missing = sorted(module for module in needed if not covered(module, deps))
        assert not missing, f"dvc.yaml stage {stage!r} lacks deps on {missing}"


def test_stages_reading_the_index_track_the_runs_map_of_every_index_file():
    # aggregate and costs map runs to bases and datasets through robust.index: a run
    # added to or removed from a study file must rerun them, and a study file added to `vars:` with it
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    index_files = ["params.yaml", *dvc["vars"]]
    for stage in ("aggregate", "costs"):
        tracked = {file: keys for entry in dvc["stages"][stage]["params"] for file, keys in entry.items()}
        assert sorted(tracked) == sorted(index_files), f"dvc.yaml stage {stage!r}: params files ≠ params.yaml + vars"
        assert all("runs" in keys for keys in tracked.values()), f"dvc.yaml stage {stage!r} must track each `runs`"
