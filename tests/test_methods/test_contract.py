"""The contract every registered method keeps (``datasets.contract.check_method``: claimed
symmetries on random and trained networks, negative controls, batch independence, a
gradient step), run over the method table in the manner of timm's ``tests/test_models.py``;
the contract shown to catch a method whose invariance breaks only on trained networks; and
the parameter counts of the built-in methods pinned (a plugin's are its own business)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from weight_batches import task_info

import baselines  # noqa: F401
import methods  # noqa: F401
from datasets.contract import (
    TRAINED,
    ContractViolation,
    cases,
    check_method,
    degenerate,
    function_change,
    trained_networks,
)
from datasets.method_table import METHODS, MethodInfo, build_method
from datasets.spec import siren_spec
from datasets.symmetry import rescale_positive
from datasets.weights import Weights, as_mixed

PARAMETERS = {  # (quick, paper) on a SIREN 2-32-32-1 with 10 classes
    "mlp": (371_978, 1_400_330), "mlp-aug": (153_098, 1_400_330), "deepsets": (143_626, 1_337_354),
    "statnn": (23_306, 1_054_010), "dwsnet": (159_818, 314_762), "nfn-np": (168_010, 45_459_754),
    "nfn-hnp": (195_930, 67_521_322), "nft": (138_842, 8_038_922), "ng-gnn": (73_322, 92_106),
    "ng-t": (72_762, 376_682), "scalegmn": (75_050, 1_598_730), "scalegmn-b": (82_698, 3_039_754),
    "probing": (282_506, 282_506),
}


@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_keeps_its_contract_on_random_and_trained_networks(method):
    report = check_method(method)
    assert any(c.name.startswith("invariance") and "trained" in c.case for c in report.checks) or \
        not METHODS[method].symmetries, "no claim was checked on trained networks"
    report.raise_for_failures()


class CountAboveCutoff(nn.Module):
    """Deliberately broken: claims invariance to positive rescaling, and computes two
    features: the first layer's rows' ``|row|_1 / |row|_2`` summed (invariant), and, per
    layer, the signs of the weights above a cutoff of 1e-6 summed, which a rescaling changes
    only where it moves a weight across the cutoff: never on random weights."""

    def __init__(self, out_dim: int) -> None:
        super().__init__()
        self.head = nn.Linear(2, out_dim)

    def forward(self, weights: Weights) -> torch.Tensor:
        def features(group) -> torch.Tensor:
            rows = group.weights[0].flatten(2)
            l1, l2 = rows.abs().sum(2), rows.norm(dim=2)
            shape = torch.where(l2 > 0, l1 / torch.where(l2 > 0, l2, 1.0), 0.0).sum(1)
            signs = sum(((w.abs() > 1e-6) * torch.sign(w)).flatten(1).sum(1) for w in group.weights)
            return torch.stack([shape, signs], 1)
        return self.head(as_mixed(weights).apply(features).to(self.head.weight.dtype))


def cutoff_method(symmetries: tuple[str, ...]) -> MethodInfo:
    return MethodInfo("count-above-cutoff", lambda task, **_: CountAboveCutoff(task.out_dim), {"quick": {}},
                      symmetries=frozenset(symmetries), blind_to=frozenset({"permute_rows_only"}), heterogeneous=True)


def test_a_method_whose_invariance_breaks_only_on_trained_networks_fails_the_contract():
    random_only = check_method(cutoff_method(("permutation", "rescale")), trained=False)
    assert random_only.passed, str(random_only)  # random weights cannot tell
    report = check_method(cutoff_method(("permutation", "rescale")))
    broken = [c for c in report.failures if c.name == "invariance to rescale"]
    assert broken and all(c.case.startswith("trained") for c in broken), str(report)
    assert {c.case for c in broken} >= {"trained, zero and tiny weights digits-cnn-zoo networks (2 architectures)",
                                        "trained, zero and tiny weights digits-cnn-park networks (12 architectures)"}
    with pytest.raises(ContractViolation, match=r"count-above-cutoff .*invariance to rescale on trained.* "
                                                r"digits-cnn-zoo networks .*relative output change"):
        report.raise_for_failures()


def test_a_method_claiming_a_symmetry_it_lacks_is_named_and_one_claiming_none_is_shown_not_invariant():
    class Flat(nn.Module):
        def __init__(self, out_dim: int) -> None:
            super().__init__()
            self.head = nn.LazyLinear(out_dim)

        def forward(self, weights: Weights) -> torch.Tensor:
            return self.head(weights.flatten())

    claims = MethodInfo("flat", lambda task, **_: Flat(task.out_dim), {"quick": {}}, symmetries=frozenset({"permutation"}))
    report = check_method(claims, trained=False)
    assert [c.case for c in report.failures if c.name == "invariance to permutation"]
    honest = check_method(MethodInfo("flat", lambda task, **_: Flat(task.out_dim), {"quick": {}},
                                     symmetries=frozenset()), trained=False)
    assert honest.passed and any(c.name == "negative control: permutation" for c in honest.checks), str(honest)


def test_the_trained_samples_are_trained_networks_of_the_embedded_datasets_with_tiny_weights():
    for name in TRAINED:
        sample = as_mixed(trained_networks(name))
        assert len(sample) >= 8 and sample.groups[0].dtype == torch.float64
    park = as_mixed(trained_networks("digits-cnn-park"))
    assert len(park.groups) == 12 and all(len(g) == 2 for g in park.groups)
    for name in ("digits-cnn-zoo", "digits-cnn-park"):  # weight decay drove some trained weights towards 0
        assert min(w.abs()[w != 0].min().item() for g in as_mixed(trained_networks(name)).groups
                   for w in g.weights) < 1e-9


def test_degenerate_networks_keep_their_symmetries_and_spread_over_many_decades():
    ws = as_mixed(trained_networks("digits-cnn-zoo")).groups[1]
    bad = degenerate(ws)
    magnitudes = torch.cat([w.abs().flatten() for w in bad.weights])
    assert (magnitudes == 0).float().mean() > 0.15 and magnitudes[magnitudes > 0].min() < 1e-30
    assert (bad.weights[0][:, 0] == 0).all() and (bad.biases[0][:, 0] == 0).all()
    moved = rescale_positive(bad, torch.Generator().manual_seed(1), 0.1, 10.0)
    assert function_change(bad, moved) < 1e-9


def test_a_heterogeneous_method_is_checked_on_mixed_batches_and_others_per_architecture():
    mixed = [c.name for c in cases(METHODS["ng-gnn"]) if "12 architectures" in c.name]
    per_architecture = [c.name for c in cases(METHODS["nfn-np"]) if "digits-cnn-park" in c.name]
    assert len(mixed) == 2 and len(per_architecture) == 24


@pytest.mark.parametrize("method", [m for m in METHODS if METHODS[m].builtin])
def test_parameter_counts_of_the_built_in_methods_are_pinned(method):
    assert method in PARAMETERS, f"pin the parameter counts of {method} here"
    task = task_info(siren_spec())
    counts = tuple(sum(p.numel() for p in build_method(method, task, profile=profile).parameters())
                   for profile in ("quick", "paper"))
    assert counts == PARAMETERS[method]
