"""Published state-dict formats <-> WeightSpace, and their error messages."""

import math
from collections import OrderedDict

import pytest
import torch

from datasets.io.state_dicts import (
    StateDictError,
    dwsnets_keys,
    dwsnets_state_dict,
    load_file,
    read_named,
    read_ordered,
    stack,
)
from datasets.spec import siren_spec
from datasets.validation import Skipper

SPEC = siren_spec()


def dwsnets_dict(seed=0) -> OrderedDict:
    g = torch.Generator().manual_seed(seed)
    out = OrderedDict()
    for i, layer in enumerate(SPEC.layers):
        out[f"seq.{i}.weight"] = torch.randn(*layer.weight_shape, generator=g)
        out[f"seq.{i}.bias"] = torch.randn(layer.out_features, generator=g)
    return out


def nfn_dict(seed=0) -> OrderedDict:
    """Keys of NFN's ``Siren``: sine layers wrap an ``nn.Linear`` called ``linear``."""
    values = list(dwsnets_dict(seed).values())
    keys = ["net.0.linear.weight", "net.0.linear.bias", "net.1.linear.weight", "net.1.linear.bias",
            "net.2.weight", "net.2.bias"]
    return OrderedDict(zip(keys, values))


def test_dwsnets_round_trip_through_a_file(tmp_path):
    state = dwsnets_dict()
    torch.save(state, tmp_path / "model_final.pth")
    weights, biases = read_named(load_file(tmp_path / "model_final.pth"), SPEC, tmp_path / "model_final.pth")
    ws = stack(SPEC, [(weights, biases)] * 2)
    assert len(ws) == 2 and ws.spec == SPEC
    back = dwsnets_state_dict(ws, 1)
    assert list(back) == [k for pair in dwsnets_keys(SPEC) for k in pair]
    assert all(torch.equal(back[k], state[k]) for k in state)


def test_fmnist_label_entry_is_not_a_parameter(tmp_path):
    state = dwsnets_dict()
    state["label"] = 7
    torch.save(state, tmp_path / "model_3.pth")
    loaded = load_file(tmp_path / "model_3.pth")
    assert loaded["label"] == 7
    read_named(loaded, SPEC, "x")


def test_nfn_keys_are_read_in_weight_bias_order():
    state = nfn_dict()
    weights, biases = read_ordered(state, SPEC, "net0.pth")
    assert torch.equal(weights[1], state["net.1.linear.weight"]) and torch.equal(biases[2], state["net.2.bias"])
    swapped = OrderedDict(list(state.items())[1::-1] + list(state.items())[2:])
    with pytest.raises(StateDictError, match="not in \\(weight, bias\\) order"):
        read_ordered(swapped, SPEC, "net0.pth")


@pytest.mark.parametrize("edit, reason, message", [
    (lambda s: s.pop("seq.1.bias"), "keys", "missing \\['seq.1.bias'\\]"),
    (lambda s: s.__setitem__("seq.3.weight", torch.zeros(1)), "keys", "unexpected \\['seq.3.weight'\\]"),
    (lambda s: s.__setitem__("seq.0.weight", torch.zeros(32, 3)), "shape", "seq.0.weight has shape \\(32, 3\\)"),
    (lambda s: s.__setitem__("seq.2.bias", torch.tensor([math.nan])), "nonfinite", "seq.2.bias holds NaN"),
    (lambda s: s.__setitem__("seq.1.weight", torch.full((32, 32), math.inf)), "nonfinite", "infinite"),
    (lambda s: s.__setitem__("seq.0.bias", torch.zeros(32, dtype=torch.long)), "dtype", "expected a float"),
])
def test_bad_state_dicts_name_the_file_and_problem(edit, reason, message):
    state = dwsnets_dict()
    edit(state)
    with pytest.raises(StateDictError, match=message) as err:
        read_named(state, SPEC, "/data/mnist_png_training_3_17/checkpoints/model_final.pth")
    assert err.value.reason == reason
    assert str(err.value).startswith("/data/mnist_png_training_3_17/checkpoints/model_final.pth: ")


def test_truncated_and_garbage_files(tmp_path):
    torch.save(dwsnets_dict(), tmp_path / "good.pth")
    (tmp_path / "cut.pth").write_bytes((tmp_path / "good.pth").read_bytes()[:300])
    (tmp_path / "garbage.pth").write_bytes(b"not a checkpoint at all")
    (tmp_path / "empty.pth").write_bytes(b"")
    for name in ("cut.pth", "garbage.pth", "empty.pth"):
        with pytest.raises(StateDictError, match="truncated or corrupt") as err:
            load_file(tmp_path / name)
        assert err.value.reason == "unreadable" and str(tmp_path / name) in str(err.value)
    torch.save([1, 2], tmp_path / "list.pth")
    with pytest.raises(StateDictError, match="not a state dict"):
        load_file(tmp_path / "list.pth")


def should_not_run() -> None:
    raise AssertionError("the loader unpickled an arbitrary global")


class Evil:
    def __reduce__(self):
        return (should_not_run, ())


def test_arbitrary_objects_are_refused(tmp_path):
    torch.save({"seq.0.weight": Evil()}, tmp_path / "evil.pth")
    with pytest.raises(StateDictError, match=r"refused to unpickle global \S*should_not_run") as err:
        load_file(tmp_path / "evil.pth")
    assert err.value.reason == "unsafe"


def test_skipper_counts_instead_of_raising():
    bad = dwsnets_dict()
    bad["seq.0.bias"][0] = math.nan
    strict, lenient = Skipper(False), Skipper(True)
    with pytest.raises(StateDictError):
        strict.attempt(read_named, bad, SPEC, "a.pth")
    assert lenient.attempt(read_named, bad, SPEC, "a.pth") is None
    assert lenient.attempt(read_named, dwsnets_dict(), SPEC, "b.pth") is not None
    assert lenient.summary() == {"nonfinite": 1}
