"""Architecture specs and batched weight containers."""

import pytest
import torch

from datasets.spec import ArchSpec, Layer, mlp_spec, siren_spec
from datasets.weights import MixedWeights, WeightSpace, as_mixed


def random_ws(spec: ArchSpec, n: int, seed: int = 0) -> WeightSpace:
    g = torch.Generator().manual_seed(seed)
    return WeightSpace.from_flat(spec, torch.randn(n, spec.num_params, generator=g, dtype=torch.float64))


def test_siren_matches_the_published_recipe():
    spec = siren_spec()
    assert spec.num_params == 1185
    assert spec.widths == (2, 32, 32, 1)
    assert [l.activation for l in spec.layers] == ["sine", "sine", "identity"]
    assert spec.layers[0].omega == 30 and spec.output_offset == 0.5


def test_spec_rejects_inconsistent_layers():
    with pytest.raises(ValueError, match="takes 5 inputs"):
        ArchSpec((Layer("linear", 4, 2), Layer("linear", 1, 5)))
    with pytest.raises(ValueError, match="conv layer cannot follow"):
        ArchSpec((Layer("linear", 4, 2), Layer("conv", 1, 4, (3, 3))))
    with pytest.raises(ValueError, match="activation"):
        Layer("linear", 1, 1, activation="swish")
    layers = (Layer("linear", 4, 2), Layer("linear", 8, 4), Layer("linear", 1, 8))
    for bad in ((2, 1), (1, 4), (-1, 2)):
        with pytest.raises(ValueError, match="residual"):
            ArchSpec(layers, residual=(bad,))


def test_residuals_join_the_first_min_width_neurons():
    layers = (Layer("linear", 4, 2), Layer("linear", 8, 4), Layer("linear", 3, 8), Layer("linear", 1, 3))
    spec = ArchSpec(layers, residual=((1, 2), (2, 3), (0, 3)))
    assert spec.residual_joined == (4, 3, 2)
    assert ArchSpec.from_dict(spec.to_dict()) == spec


def test_spec_round_trips_through_json():
    spec = ArchSpec((Layer("conv", 4, 3, (3, 3), 1, 1, "relu"), Layer("conv", 4, 4, (5, 5), 1, 2, "relu"),
                     Layer("linear", 10, 4)), residual=((1, 2),))
    assert ArchSpec.from_dict(spec.to_dict()) == spec


def test_flatten_round_trip_and_indexing():
    spec = mlp_spec([3, 5, 4, 2], "relu")
    ws = random_ws(spec, 6)
    assert ws.flatten().shape == (6, spec.num_params)
    back = WeightSpace.from_flat(spec, ws.flatten())
    assert all(torch.equal(a, b) for a, b in zip(back.weights, ws.weights))
    assert len(ws[2]) == 1 and len(ws[1:4]) == 3 and len(ws[[0, 5]]) == 2
    assert torch.equal(WeightSpace.cat([ws[:2], ws[2:]]).flatten(), ws.flatten())


def test_shape_mismatch_is_refused():
    spec = mlp_spec([3, 5, 2])
    with pytest.raises(ValueError, match="layer 0: weight shape"):
        WeightSpace(spec, (torch.zeros(2, 5, 4), torch.zeros(2, 2, 5)), (torch.zeros(2, 5), torch.zeros(2, 2)))


def test_nonfinite_rows_are_found():
    ws = random_ws(mlp_spec([2, 3, 1]), 4)
    ws.weights[1][2, 0, 1] = float("nan")
    assert ws.nonfinite_rows().tolist() == [False, False, True, False]


def test_mixed_weights_keep_rows_aligned():
    a, b = random_ws(mlp_spec([2, 4, 1]), 3, 1), random_ws(mlp_spec([2, 8, 8, 1]), 2, 2)
    mixed = MixedWeights.from_groups([a, b])
    picked = mixed[[4, 0, 2]]
    out = picked.apply(lambda g: g.flatten()[:, :1])
    expected = torch.stack([b.flatten()[1, :1], a.flatten()[0, :1], a.flatten()[2, :1]])
    assert torch.equal(out, expected)
    joined = MixedWeights.cat([picked, mixed])
    assert len(joined) == 8 and len(joined.groups) == 2
    assert torch.equal(joined.apply(lambda g: g.flatten()[:, :1])[:3], expected)
    assert len(as_mixed(a).groups) == 1
