"""Methods that take one architecture on zoos whose networks differ only in activation."""

import pytest
import torch

import baselines  # noqa: F401
import datasets.sources  # noqa: F401
from benchmarks.shared_shape import SharedShape, method_task
from datasets.dataset_table import DATASETS
from datasets.errors import UnsupportedArchitecture
from datasets.method_table import METHODS, build_method
from datasets.source import LoadOptions
from datasets.spec import ArchSpec, Layer, shared_shape
from datasets.symmetry import permute_hidden
from datasets.weights import MixedWeights, WeightSpace, as_shape


def cnn(activation: str, width: int = 4) -> ArchSpec:
    return ArchSpec((Layer("conv", width, 1, (3, 3), 2, 1, activation),
                     Layer("conv", width, width, (3, 3), 2, 1, activation), Layer("linear", 10, width)))


def zoo(specs, rows=6, seed=0) -> MixedWeights:
    g = torch.Generator().manual_seed(seed)
    groups = [WeightSpace.from_flat(s, torch.randn(rows, s.num_params, generator=g)) for s in specs]
    return MixedWeights.from_groups(groups)[torch.randperm(rows * len(specs), generator=g)]


@pytest.fixture(scope="module")
def digits_zoo(tmp_path_factory):
    """A small real ``digits-cnn-zoo``: ReLU and tanh CNNs of one weight shape."""
    options = LoadOptions(tmp_path_factory.mktemp("data"), progress=False,
                          params={"runs": "20", "epochs": "1", "checkpoints": "1"})
    return DATASETS["digits-cnn-zoo"].open(options).load()


def test_shared_shape_ignores_activations_only():
    shape = shared_shape((cnn("relu"), cnn("tanh")))
    assert shape is not None and all(layer.activation == "identity" for layer in shape.layers)
    assert "relu/tanh" in shape.describe()
    assert shared_shape((cnn("relu"), cnn("relu", width=8))) is None


def test_as_shape_keeps_batch_order():
    specs = (cnn("relu"), cnn("tanh"))
    mixed, shape = zoo(specs), shared_shape(specs)
    merged = as_shape(mixed, shape)
    for g, group in enumerate(mixed.groups):
        pos = mixed.positions(g)
        assert all(torch.equal(a[pos], b) for a, b in zip(merged.weights, group.weights))
        assert all(torch.equal(a[pos], b) for a, b in zip(merged.biases, group.biases))


@pytest.mark.parametrize("method", ["nfn-np", "nfn-hnp", "mlp"])
def test_one_architecture_methods_take_relu_and_tanh_networks(method, digits_zoo):
    assert digits_zoo.heterogeneous and shared_shape(digits_zoo.specs) is not None
    task, shape = method_task(METHODS[method], digits_zoo)
    model = SharedShape(build_method(method, task), shape).double().eval()
    weights = digits_zoo.val.weights.to(torch.float64)
    out = model(weights)
    assert out.shape == (len(weights), 1)
    # each network's prediction is the inner model's on that network alone
    single = model.model(as_shape(weights[torch.tensor([1])], model.spec))
    assert torch.allclose(out[1], single[0])
    moved = model(permute_hidden(weights, torch.Generator().manual_seed(1)))
    assert torch.allclose(moved, out, atol=1e-8) != (method == "mlp")


def test_different_weight_shapes_are_not_applicable(tmp_path):
    options = LoadOptions(tmp_path, progress=False, params={"runs": "20", "epochs": "1", "checkpoints": "1",
                                                            "architectures": "4"})
    park = DATASETS["digits-cnn-park"].open(options).load()
    with pytest.raises(UnsupportedArchitecture, match="different weight shapes"):
        method_task(METHODS["nfn-np"], park)
