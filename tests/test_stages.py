"""Bad params fail fast: one line naming the key and the allowed values, no output written."""

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from robust import pipeline
from robust.errors import ConfigError
from robust.evaluate import parse_suite
from robust.io import load_torch, save_torch
from robust.models import build_model
from robust.params import load_params
from robust.pipeline import attack_run, finetune_run, prepare_dataset, pretrain_base

REPO = Path(__file__).resolve().parents[1]
PARAMS = load_params(REPO / "params.yaml")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A prepared digits subset and an untrained base checkpoint (enough to reach validation)."""
    root = tmp_path_factory.mktemp("stages")
    params = copy.deepcopy(PARAMS)
    params["profiles"]["smoke"].update(max_train=50, max_test=20)
    prepare_dataset(params, "data", root / "prepared")
    model = build_model("jakubovitz-mnist", in_shape=(1, 28, 28), num_classes=10, width=0.25)
    config = {"arch": "jakubovitz-mnist", "in_shape": [1, 28, 28], "num_classes": 10, "width": 0.25,
              "dataset": "digits", "profile": "smoke", "base": "main", "run": "main", "study": "main",
              "defense": {"name": "none"}}
    save_torch({"model": model.state_dict(), "config": config}, root / "base" / "model.pt")
    return root


def _set(params, key, value):
    node = params
    *parents, last = key.split(".")
    for part in parents:
        node = node[part]
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value


_DELETE = object()

BAD = [  # (params key to change, new value, params key the error must name, stage)
    ("data.name", "imagenet-22k", "data.name", "prepare"),
    ("data.name", "mnist10k", "data.root", "prepare"),  # mnist10k from a root that does not exist
    ("profile", "huge", "profile", "prepare"),
    ("pretrain.arch", "vgg-unknown", "pretrain.arch", "pretrain"),
    ("pretrain.optimizer", "adamw9", "pretrain.optimizer", "pretrain"),
    ("profiles.smoke.pretrain.epochs", "ten", "epochs", "pretrain"),
    ("defense.name", "magic", "defense.name", "finetune"),
    ("defense.lambda", -0.1, "defense.lambda", "finetune"),
    ("defense.lambda", "large", "defense.lambda", "finetune"),
    ("defense.lamda", 0.1, "defense.lamda", "finetune"),
    ("attack.suite", [], "attack.suite", "attack"),
    ("attack.suite", [{"name": "cw-l7"}], "attack.suite[0].name", "attack"),
    ("attack.suite", [{"name": "fgsm", "eps": -0.1}], "attack.suite[0].eps", "attack"),
    ("attack.suite", [{"name": "fgsm", "eps": 8}], "attack.suite[0].eps", "attack"),
    ("attack.suite", [{"name": "pgd", "eps": 0.1, "steps": 10, "step_size": 0.01, "restarts": 3}],
     "attack.suite[0].restarts", "attack"),
    ("profiles.smoke.eval_examples", 0, "eval_examples", "attack"),
    ("attack.sanity", {"large_eps": 3}, "attack.sanity.large_eps", "attack"),
    ("attack.transfer", [{"name": "pgd", "eps": 0.1}], "attack.transfer[0].steps", "attack"),
    ("attack.profiles", {"smoke": {"steps": 3}}, "attack.profiles.smoke.steps", "attack"),
    ("pretrain.profiles", {"smoke": {"momentum": 0.9}}, "pretrain.profiles.smoke.momentum", "pretrain"),
    ("pretrain.seed", -1, "pretrain.seed", "pretrain"),
]


def _run_stage(stage, params, root, out):
    if stage == "prepare":
        return prepare_dataset(params, "data", out)
    if stage == "pretrain":
        return pretrain_base(params, "pretrain", root / "prepared", out, name="main")
    if stage == "finetune":
        return finetune_run(params, "defense", "finetune", root / "base", root / "prepared", out,
                            name="main", study="main")
    return attack_run(params, "attack", root / "base", root / "prepared", out / "rows.parquet", out / "adv.pt")


@pytest.mark.parametrize("key, value, named, stage", BAD, ids=[f"{b[0]}={b[1]!r}" for b in BAD])
def test_bad_params_raise_config_error_naming_the_key(workspace, tmp_path, key, value, named, stage):
    params = copy.deepcopy(PARAMS)
    params["profiles"]["smoke"].update(max_train=50, max_test=20)
    _set(params, key, value)
    if key == "data.name" and value == "mnist10k":
        params["data"]["root"] = str(tmp_path / "no-such-folder")
    out = tmp_path / "out"
    with pytest.raises(ConfigError) as error:
        _run_stage(stage, params, workspace, out)
    assert f"'{named}" in str(error.value) or named in str(error.value).split(":")[0]
    assert "\n" not in str(error.value)
    assert not out.exists() or not any(out.iterdir()), "a failed stage left output behind"


def test_stage_script_prints_one_line_and_exits_2(tmp_path):
    bad = dict(PARAMS, data={"name": "imagenet-22k", "root": None})
    (tmp_path / "params.yaml").write_text(__import__("yaml").safe_dump(bad))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, str(REPO / "stages/prepare.py"), "--params-file", "params.yaml",
                             "--data-key", "data", "--out", "data/prepared/main"],
                            cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: params key 'data.name': unknown dataset 'imagenet-22k' (allowed: ")
    assert "digits" in lines[0] and "mnist10k" in lines[0]
    assert not (tmp_path / "data").exists()


def test_a_stage_runs_on_the_threads_params_yaml_pins_and_restores_the_callers(tmp_path, monkeypatch):
    from robust.stage import stage, stage_threads

    monkeypatch.chdir(tmp_path)
    assert stage_threads() is None  # no params.yaml: torch's default
    (tmp_path / "params.yaml").write_text("threads: 3\n")
    seen = []
    stage(lambda: seen.append(torch.get_num_threads()))()
    assert seen == [3] and torch.get_num_threads() == 1  # conftest's count, restored
    (tmp_path / "params.yaml").write_text("threads: 0\n")
    with pytest.raises(SystemExit) as stopped:
        stage(lambda: None)()
    assert stopped.value.code == 2 and torch.get_num_threads() == 1
    with pytest.raises(ConfigError, match="threads"):
        stage_threads()


def test_regular_training_trains_the_base_with_its_defense_and_zero_epochs_keep_it(workspace, tmp_path):
    """Jakubovitz Table 2: a base trained with a regularizer from scratch, then evaluated as trained."""
    params = copy.deepcopy(PARAMS)
    params["profiles"]["smoke"].update(max_train=50, max_test=20)
    params["profiles"]["smoke"]["pretrain"]["epochs"] = 1
    params["pretrain"]["defense"] = {"name": "jacobian", "lambda": 0.1}
    history = pretrain_base(params, "pretrain", workspace / "prepared", tmp_path / "base", name="regular",
                            cost_out=tmp_path / "cost.json")
    assert "jacobian_fro" in " ".join(history.columns) or len(history.columns) > 3  # the penalty was logged
    cost = json.loads((tmp_path / "cost.json").read_text())  # the time, with what it was measured on
    assert cost["epochs_timed"] == 1 and cost["seconds_per_epoch"] > 0
    assert cost["device"] == "cpu" and cost["torch"] == torch.__version__ and cost["threads"] >= 1
    params["finetune"]["epochs"] = 0
    finetune_run(params, "defense", "finetune", tmp_path / "base", workspace / "prepared", tmp_path / "run",
                 name="regular-run", study="s")
    base, run = (load_torch(tmp_path / part / "model.pt") for part in ("base", "run"))
    assert all(torch.equal(base["model"][k], run["model"][k]) for k in base["model"])
    assert run["config"]["defense"] == {"name": "jacobian", "lambda": 0.1}  # what shaped the evaluated model
    with pytest.raises(ConfigError, match=r"pretrain\.defense\.name"):
        pretrain_base({**params, "pretrain": {**params["pretrain"], "defense": {"name": "magic"}}}, "pretrain",
                      workspace / "prepared", tmp_path / "bad", name="bad")


def test_a_config_overrides_its_profile_scale_seed_and_suite(workspace, tmp_path):
    """A study's own schedule, seed and cheaper smoke suite (adversary-critic study) replace the defaults."""
    params = copy.deepcopy(PARAMS)
    params["profiles"]["smoke"].update(max_train=50, max_test=20)
    params["pretrain"].update(seed=7, profiles={"smoke": {"epochs": 1, "batch_size": 25, "lr": 0.0005}})
    history = pretrain_base(params, "pretrain", workspace / "prepared", tmp_path / "base", name="own")
    assert len(history) == 1 and history.lr.iloc[0] == 0.0005
    assert load_torch(tmp_path / "base" / "model.pt")["config"]["seed"] == 7
    params["attack"]["profiles"] = {"smoke": {"suite": [{"name": "fgsm", "eps": 0.05}]}, "cpu": {"suite": []}}
    frame = attack_run(params, "attack", workspace / "base", workspace / "prepared", tmp_path / "rows.parquet",
                       tmp_path / "adv.pt")
    attacks = set(frame.attack) - {"clean", "pgd"}  # pgd: the large-ε sanity attack
    assert attacks == {"fgsm"} and set(frame[frame.attack == "fgsm"].eps) == {0.05}


def test_a_base_narrows_its_own_network_for_one_profile_only(workspace, tmp_path):
    params = copy.deepcopy(PARAMS)
    params["profiles"]["smoke"].update(max_train=50, max_test=20, width=0.5)
    params["pretrain"]["profiles"] = {"smoke": {"epochs": 1, "width": 0.25}, "cpu": {"width": 0.125}}
    pretrain_base(params, "pretrain", workspace / "prepared", tmp_path / "own", name="own")
    narrowed = load_torch(tmp_path / "own" / "model.pt")
    assert narrowed["config"]["width"] == 0.25
    del params["pretrain"]["profiles"]["smoke"]["width"]
    pretrain_base(params, "pretrain", workspace / "prepared", tmp_path / "profile", name="profile")
    assert load_torch(tmp_path / "profile" / "model.pt")["config"]["width"] == 0.5  # the profile's
    count = lambda checkpoint: sum(v.numel() for v in checkpoint["model"].values())  # noqa: E731
    assert count(narrowed) < count(load_torch(tmp_path / "profile" / "model.pt"))
    params["pretrain"]["profiles"]["smoke"]["width"] = -1
    with pytest.raises(ConfigError, match=r"'pretrain\.profiles\.smoke\.width'"):
        pretrain_base(params, "pretrain", workspace / "prepared", tmp_path / "bad", name="bad")
    params["finetune"]["profiles"] = {"smoke": {"width": 0.25}}  # a fine-tune keeps its base's network
    with pytest.raises(ConfigError, match=r"'finetune\.profiles\.smoke\.width'"):
        finetune_run(params, "defense", "finetune", tmp_path / "own", workspace / "prepared", tmp_path / "run",
                     name="run", study="s")


def test_lrc_data_covariance_is_estimated_from_the_training_split_only(monkeypatch):
    gen = torch.Generator().manual_seed(0)
    brightness = torch.rand(64, 1, 1, 1, generator=gen)
    splits = {"train": (brightness.expand(64, 1, 6, 6).clone(), torch.zeros(64, dtype=torch.long)),  # flat images
              "test": (torch.rand(64, 1, 6, 6, generator=gen), torch.zeros(64, dtype=torch.long))}
    loaded = []
    monkeypatch.setattr(pipeline.data, "load_split", lambda _, split: loaded.append(split) or splits[split])
    suite = parse_suite([{"name": "lrc", "sigma": 0.1, "covariance": "data", "label": "lrc-data"},
                         {"name": "lrc", "sigma": 0.1, "decay_length": 2.0}])
    resolved = pipeline.with_data_covariance(suite, Path("prepared"))
    assert loaded == ["train"] and resolved[1] is suite[1]
    # images that are flat, up to their brightness, have every pixel pair fully correlated
    field = resolved[0].settings["covariance"].field(torch.empty(200, 1, 6, 6), gen)
    assert (field - field[:, :, :1, :1]).abs().max() < 1e-5 and field.std() > 0.5
    assert pipeline.with_data_covariance(suite[1:], Path("prepared")) == suite[1:] and loaded == ["train"]
