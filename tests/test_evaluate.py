"""The evaluation protocol: clean first, robust ≤ clean, budgets enforced, ρ_adv as defined."""

import pytest
import torch
from torch import nn

import robust.evaluate as evaluate_module
from robust.errors import ConfigError
from robust.evaluate import clean_batch, evaluate, fixed_subset, parse_suite
from robust.jacobian_norms import jacobian_norms
from robust.saliency import alignment


def _linear_model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    return model.eval()


def _data():
    generator = torch.Generator().manual_seed(1)
    x = torch.rand(40, 1, 4, 4, generator=generator)
    return x, _linear_model()(x).argmax(1)  # labels = predictions: every point starts correct


SUITE = parse_suite([{"name": "fgsm", "eps": 0.05}, {"name": "deepfool", "steps": 50, "overshoot": 0.02}])


def _values(rows):
    return {(row["attack"], row["metric"]): row["value"] for row in rows}


def test_rows_clean_first_and_robust_not_above_clean():
    x, y = _data()
    rows = evaluate(_linear_model(), x, y, SUITE, batch_size=16, seed=0).rows
    assert rows[0]["attack"] == "clean" and rows[0]["metric"] == "accuracy"
    values = _values(rows)
    assert values["clean", "accuracy"] == 1.0
    assert values["fgsm", "accuracy"] <= values["clean", "accuracy"]
    assert values["deepfool", "accuracy"] == 0.0  # DeepFool crosses every linear boundary
    assert values["deepfool", "rho_adv"] > 0
    assert all(row["n"] == 40 for row in rows)


def test_rho_adv_counts_misclassified_points_as_zero():
    x, y = _data()
    flipped = y.clone()
    flipped[:20] = (y[:20] + 1) % 3  # half the points now misclassified
    suite = SUITE[1:]
    full = _values(evaluate(_linear_model(), x, y, suite, batch_size=16, seed=0).rows)["deepfool", "rho_adv"]
    half = _values(evaluate(_linear_model(), x, flipped, suite, batch_size=16, seed=0).rows)["deepfool", "rho_adv"]
    x_correct, y_correct = x[20:], y[20:]
    second = _values(evaluate(_linear_model(), x_correct, y_correct, suite, batch_size=16, seed=0).rows)
    assert half == pytest.approx(second["deepfool", "rho_adv"] / 2, rel=1e-5)
    assert half < full


def test_rho_adv_converged_leaves_out_the_points_the_attack_failed_on(monkeypatch):
    # C&W returns x where it finds no adversarial example: 0 in rho_adv, left out of rho_adv_converged
    x, y = _data()
    real = evaluate_module.run_attack

    def fails_on_even_points(name, model, xb, yb, generator=None, **settings):
        x_adv = real(name, model, xb, yb, generator=generator, **settings)
        x_adv[::2] = xb[::2]
        return x_adv

    monkeypatch.setattr(evaluate_module, "run_attack", fails_on_even_points)
    values = _values(evaluate(_linear_model(), x, y, SUITE[1:], batch_size=16, seed=0).rows)
    assert values["deepfool", "accuracy"] == 0.5
    assert values["deepfool", "rho_adv_converged"] == pytest.approx(2 * values["deepfool", "rho_adv"], rel=1e-6)


def test_an_attack_exceeding_its_budget_is_refused(monkeypatch):
    x, y = _data()
    monkeypatch.setattr(evaluate_module, "run_attack",
                        lambda name, model, xb, yb, generator=None, **s: (xb + 2 * s["eps"]).clamp(0, 1))
    with pytest.raises(AssertionError, match="exceeds"):
        evaluate(_linear_model(), x, y, SUITE[:1], batch_size=16, seed=0).rows


def test_the_budget_check_allows_the_float32_rounding_of_a_large_norm_and_no_more():
    spec = parse_suite([{"name": "pgd", "norm": "l1", "eps": 50.0, "steps": 1, "step_size": 1.0}])[0]
    x = torch.zeros(2, 784)
    x_adv = x.clone()
    x_adv[:, :50] = 1.0
    x_adv[:, 50] = 4e-5  # ‖δ‖₁ = 50.00004, what PGD-L1's projection at ε = 50 returned in float32
    evaluate_module._check_budget(spec, x, x_adv)
    x_adv[:, 50] = 0.01
    with pytest.raises(AssertionError, match="exceeds"):
        evaluate_module._check_budget(spec, x, x_adv)


def test_eps_range_depends_on_the_norm():
    parse_suite([{"name": "pgd", "norm": "l2", "eps": 2.0, "steps": 5, "step_size": 0.5}])
    with pytest.raises(ConfigError, match=r"attack\.suite\[0\]\.eps"):
        parse_suite([{"name": "pgd", "norm": "linf", "eps": 2.0, "steps": 5, "step_size": 0.5}])
    with pytest.raises(ConfigError, match=r"attack\.suite\[1\]\.steps"):
        parse_suite([{"name": "fgsm", "eps": 0.1}, {"name": "pgd", "eps": 0.1, "step_size": 0.01}])


def test_fixed_subset_is_seeded_sorted_and_complete_when_n_is_none():
    assert torch.equal(fixed_subset(100, 10, seed=3), fixed_subset(100, 10, seed=3))
    assert not torch.equal(fixed_subset(100, 10, seed=3), fixed_subset(100, 10, seed=4))
    subset = fixed_subset(100, 10, seed=3)
    assert torch.equal(subset, subset.sort().values) and len(subset.unique()) == 10
    assert torch.equal(fixed_subset(7, None, seed=0), torch.arange(7))


def _conv_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4 * 3 * 3, 5)).eval()


def test_the_shared_clean_pass_equals_the_separate_computations():
    model = _conv_model()
    x = torch.rand(12, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    predicted, metrics = clean_batch(model, x)
    with torch.no_grad():
        assert torch.equal(predicted, model(x).argmax(1))
    for kind, values in jacobian_norms(model, x).items():
        torch.testing.assert_close(metrics[kind], values, rtol=0, atol=1e-6)
    # the predicted class's Jacobian row is the gradient alignment() takes by its own backward pass
    torch.testing.assert_close(metrics["alignment"], alignment(model, x), rtol=0, atol=1e-6)
    assert list(metrics) == ["jacobian_fro", "jacobian_fro_softmax", "alignment"]


def test_the_clean_pass_runs_the_model_forward_once_per_batch():
    model = _conv_model()
    x = torch.rand(10, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    calls = []
    handle = model.register_forward_hook(lambda *_: calls.append(1))
    try:
        rows = evaluate(model, x, torch.zeros(10, dtype=torch.long), [], batch_size=4, seed=0).rows
    finally:
        handle.remove()
    assert len(calls) == 3  # 3 batches: predictions, ‖J‖_F and alignment share each batch's forward pass
    assert {row["metric"] for row in rows} == {"accuracy", "jacobian_fro", "jacobian_fro_softmax", "alignment"}


# ---- budgets of minimal-perturbation attacks (AFD Table 2's DDN, DeepFool and C&W columns) ----

def _rows_by_eps(rows, attack):
    return {row["eps"]: row["value"] for row in rows if row["attack"] == attack and row["metric"] == "accuracy"
            and row["eps"] == row["eps"]}


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_budgets_cut_the_minimal_perturbation_as_foolbox_clips_it(norm):
    fb_distances = pytest.importorskip("foolbox.distances")
    x, y = _data()
    model = _linear_model()
    budgets = [0.0, 0.02, 0.05, 0.1, 0.2] if norm == "linf" else [0.0, 0.1, 0.2, 0.4, 0.8]
    suite = parse_suite([{"name": "deepfool", "norm": norm, "steps": 50, "budgets": budgets}])
    result = evaluate(model, x, y, suite, batch_size=16, seed=0)
    x_adv = evaluate_module.run_attack("deepfool", model, x, y, norm=norm, steps=50)
    distance = fb_distances.linf if norm == "linf" else fb_distances.l2
    expected = {}
    for eps in budgets:  # Foolbox 3's own clipping of a minimisation attack's output at ε
        clipped = distance.clip_perturbation(x, x_adv, eps)
        expected[eps] = (model(clipped).argmax(1) == y).float().mean().item()
    accuracy = _rows_by_eps(result.rows, "deepfool")
    assert accuracy == pytest.approx(expected, abs=1e-6)
    assert accuracy[0.0] == 1.0 and accuracy[budgets[-1]] < 0.5  # from clean to (nearly) the attack's own
    auc = next(row["value"] for row in result.rows if row["metric"] == "auc")
    assert auc == pytest.approx(evaluate_module.sweep_auc(budgets, [expected[e] for e in budgets]))
    # the attack's own rows stay as without budgets
    plain = evaluate(model, x, y, parse_suite([{"name": "deepfool", "norm": norm, "steps": 50}]), batch_size=16,
                     seed=0).rows
    def without_eps(rows):  # NaN ≠ NaN: compare the rows that have no ε with it dropped
        return [{k: v for k, v in row.items() if k != "eps"} for row in rows if row["eps"] != row["eps"]]

    assert without_eps(r for r in result.rows if r["metric"] != "auc") == without_eps(plain)


def test_budgets_are_refused_where_they_mean_nothing():
    with pytest.raises(ConfigError, match=r"suite\[0\]\.budgets': only minimal-perturbation attacks"):
        parse_suite([{"name": "pgd", "eps": 0.3, "steps": 10, "step_size": 0.01, "budgets": [0.1, 0.2]}])
    for budgets, message in (([], "non-empty list"), (0.3, "non-empty list"), ([0.1, 0.1], "distinct"),
                             ([0.5, 2.0], r"\[0, 1\] for norm linf")):
        with pytest.raises(ConfigError, match=rf"suite\[0\]\.budgets': .*{message}"):
            parse_suite([{"name": "deepfool", "norm": "linf", "budgets": budgets}])
    assert parse_suite([{"name": "cw", "budgets": [0, 2.5]}])[0].budgets == (0.0, 2.5)  # L2: ε may exceed 1


def test_examples_attack_a_seeded_subset_of_the_evaluated_points(monkeypatch):
    x, y = _data()
    attacked = []

    def record(name, model, xb, yb, generator=None, **settings):
        attacked.append(xb)
        return xb

    monkeypatch.setattr(evaluate_module, "run_attack", record)
    suite = parse_suite([{"name": "fgsm", "eps": 0.05, "examples": 12},
                         {"name": "fgsm", "eps": 0.05, "examples": 12, "label": "again"},
                         {"name": "fgsm", "eps": 0.1}])
    rows = evaluate(_linear_model(), x, y, suite, batch_size=5, seed=3).rows
    subset, again, everything = (torch.cat(attacked[i:j]) for i, j in ((0, 3), (3, 6), (6, 14)))
    assert torch.equal(subset, x[fixed_subset(40, 12, seed=3)]) and torch.equal(again, subset)
    assert torch.equal(everything, x)
    assert {(row["label"], row["eps"], row["n"]) for row in rows if row["attack"] == "fgsm"} == {
        ("", 0.05, 12), ("again", 0.05, 12), ("", 0.1, 40)}


def test_examples_must_be_a_positive_count_and_stay_out_of_full_coverage_suites():
    for examples in (0, -3, 2.5, True, "100"):
        with pytest.raises(ConfigError, match=r"suite\[0\]\.examples': must be a positive number"):
            parse_suite([{"name": "fgsm", "eps": 0.1, "examples": examples}])
    with pytest.raises(ConfigError, match=r"angles\.attacks\[0\]\.examples': these attacks run on every"):
        parse_suite([{"name": "fgsm", "eps": 0.1, "examples": 10}], "representation.angles.attacks", subsets=False)
    (spec,) = parse_suite([{"name": "fgsm", "eps": 0.1, "examples": 10}])
    with pytest.raises(ConfigError, match="transfer examples must cover every evaluated point"):
        evaluate(_linear_model(), *_data(), [spec], batch_size=16, seed=0, keep=[spec])
