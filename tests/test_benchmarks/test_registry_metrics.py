"""Registries and metrics."""

import pytest
import torch
from scipy.stats import kendalltau

from benchmarks.metrics import METRICS, Undefined, accuracy, chance, compute, kendall_tau, mse, r2
from benchmarks.suites import SUITES
from datasets.errors import UnknownName
from datasets.registry import Registry


def test_duplicates_are_refused_and_unknown_names_suggest():
    reg = Registry("method")
    reg.add("ng-gnn", 1)
    with pytest.raises(ValueError, match="already registered"):
        reg.add("ng-gnn", 2)
    with pytest.raises(UnknownName) as err:
        reg["ng-gn"]
    assert str(err.value) == "unknown method 'ng-gn'. Did you mean 'ng-gnn'? Valid: ng-gnn"
    assert "inr" in SUITES and "accuracy" in METRICS


def test_kendall_tau_matches_scipy_on_known_inputs():
    pred = torch.tensor([0.1, 0.4, 0.35, 0.8, 0.7, 0.2])
    true = torch.tensor([0.2, 0.3, 0.5, 0.9, 0.6, 0.1])
    assert kendall_tau(pred, true) == pytest.approx(kendalltau(pred.numpy(), true.numpy()).statistic)
    assert kendall_tau(true, true) == pytest.approx(1.0)
    assert kendall_tau(-true, true) == pytest.approx(-1.0)
    assert kendall_tau(torch.ones(6), true) == 0.0  # constant predictions rank nothing


def test_regression_and_classification_metrics():
    true = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert r2(true[:, None], true) == pytest.approx(1.0)
    assert r2(torch.full((4,), 2.5), true) == pytest.approx(0.0)
    assert mse(true + 1, true) == pytest.approx(1.0)
    logits = torch.tensor([[2.0, 1.0], [0.0, 3.0], [1.0, 0.0]])
    assert accuracy(logits, torch.tensor([0, 1, 1])) == pytest.approx(2 / 3)
    assert compute(("r2", "mse"), true, true) == ({"r2": 1.0, "mse": 0.0}, {})


def test_metrics_check_their_inputs():
    with pytest.raises(ValueError, match="int64 class ids"):
        accuracy(torch.zeros(3, 2), torch.zeros(3))
    with pytest.raises(ValueError, match="same first dimension"):
        kendall_tau(torch.zeros(3), torch.zeros(4))
    with pytest.raises(ValueError, match=r"\(N,\) or \(N, 1\)"):
        mse(torch.zeros(3, 2), torch.zeros(3))


def test_undefined_metrics_say_so_instead_of_a_number():
    constant = torch.full((5,), 0.3)
    with pytest.raises(Undefined, match="all equal"):
        r2(torch.rand(5), constant)
    values, why = compute(("kendall_tau", "r2", "mse"), torch.rand(1), torch.tensor([0.5]))
    assert values["kendall_tau"] is None and values["r2"] is None and values["mse"] is not None
    assert "1 target(s)" in why["r2"]


def test_chance_levels():
    targets = torch.tensor([0, 0, 0, 1])
    level, margin = chance("accuracy", targets, 10)
    assert level == 0.75 and margin == pytest.approx(2 * (0.75 * 0.25 / 4) ** 0.5)
    assert chance("kendall_tau", torch.rand(100), 1)[0] == 0.0 and chance("kendall_tau", torch.rand(100), 1)[1] < 0.2
    assert METRICS["accuracy"].show(0.5) == 50.0 and METRICS["accuracy"].label == "accuracy %"
