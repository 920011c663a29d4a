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


def interleaved(seed: int) -> MixedWeights:
    """Three architectures (one of them empty after the pick), rows in a random order."""
    g = torch.Generator().manual_seed(seed)
    groups = [random_ws(mlp_spec([2, 4, 1]), 4, 1), random_ws(mlp_spec([2, 8, 8, 1]), 3, 2),
              random_ws(mlp_spec([3, 2]), 5, 3)]
    return MixedWeights.from_groups(groups)[torch.randperm(12, generator=g)[:9]]


@pytest.mark.parametrize("seed", range(5))
def test_positions_and_only_find_each_groups_rows_from_the_groups_sizes(seed):
    mixed = interleaved(seed)
    for g in range(len(mixed.groups)):  # the definition: where the group's rows are, in row order
        where = torch.nonzero(mixed.group_index == g).squeeze(1)
        assert torch.equal(mixed.positions(g), where[torch.argsort(mixed.row_index[where])])
    first = lambda ws: ws.flatten()[:, :1]  # noqa: E731  (a row's first parameter identifies it)
    for chosen in ([0], [1, 2], [0, 2], list(range(len(mixed.groups)))):
        positions, sub = mixed.only(chosen)
        expected = torch.cat([torch.nonzero(mixed.group_index == g).squeeze(1) for g in chosen]).sort().values
        assert torch.equal(positions, expected)
        assert sub.specs == tuple(mixed.groups[g].spec for g in chosen)
        assert torch.equal(sub.apply(first), mixed.apply(first)[positions])
        sub.check_rows()


def test_a_batch_that_does_not_hold_each_row_once_is_refused():
    mixed = interleaved(0)
    mixed.check_rows()
    first, second = mixed.positions(0)[:2]  # group 0's rows 0 and 1: row 0 twice, row 1 missing
    twice = MixedWeights(mixed.groups, mixed.group_index, mixed.row_index.clone().index_fill(0, second, 0))
    assert mixed.row_index[first] == 0
    short = MixedWeights(mixed.groups, mixed.group_index[1:], mixed.row_index[1:])
    for bad in (twice, short):
        with pytest.raises(ValueError, match=r"do not hold every row of its 3 group\(s\) \(\[\d, \d, \d\] rows\) exactly once"):
            bad.check_rows()
