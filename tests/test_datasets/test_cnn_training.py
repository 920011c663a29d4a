"""Vectorised CNN training: per-network optimisers, dropout, init, independence of networks."""

import math

import pytest
import torch

import datasets.cnn_training as cnn_training
from datasets.cache import ChunkStore, chunk_generator
from datasets.cnn_training import (
    INITS,
    OPTIMIZERS,
    TRUNCATED_STD,
    BatchedOptimizer,
    Hyperparameters,
    ImageTask,
    TrainingRecipe,
    heldout_accuracy,
    init_cnns,
    sample_hyperparameters,
    train_cnns,
    train_forward,
)
from datasets.errors import ConfigError
from datasets.functional import forward
from datasets.spec import ArchSpec, Layer
from datasets.weights import WeightSpace

RESIDUAL_CNN = ArchSpec((Layer("conv", 4, 1, (3, 3), 2, 1, "relu"), Layer("conv", 4, 4, (5, 5), 1, 2, "relu"),
                         Layer("conv", 4, 4, (3, 3), 1, 1, "relu"), Layer("linear", 10, 4)), residual=((1, 3),))
# residuals between unequal widths, as in the CNN Wild Park: 6 -> 3 channels (joins 3), 3 -> 5 (joins 3)
UNEQUAL_CNN = ArchSpec((Layer("conv", 6, 1, (3, 3), 1, 1, "relu"), Layer("conv", 2, 6, (3, 3), 1, 1, "tanh"),
                        Layer("conv", 3, 2, (5, 5), 1, 2, "gelu"), Layer("conv", 5, 3, (3, 3), 1, 1, "relu"),
                        Layer("linear", 10, 5)), residual=((1, 3), (3, 4)))


def hyperparameters(n: int, **values) -> Hyperparameters:
    base = {"learning_rate": 1e-2, "l2": 0.0, "dropout": 0.0, "init_std": 0.1, "train_fraction": 1.0,
            "optimizer": 1, "init": 0}
    base.update(values)
    return Hyperparameters(**{k: torch.as_tensor(v).expand(n).clone() if torch.as_tensor(v).ndim == 0
                              else torch.as_tensor(v) for k, v in base.items()})


def toy_task(seed: int = 0) -> ImageTask:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(80, 1, 8, 8, generator=g)
    y = torch.randint(0, 10, (80,), generator=g)
    return ImageTask(x[:60], y[:60], x[60:], y[60:])


def reference(name: str, w: torch.Tensor, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """torch's optimiser with the settings our batched update claims to follow."""
    if name == "sgd":
        return torch.optim.SGD([w], lr=lr, momentum=0.9, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam([w], lr=lr, eps=1e-12, weight_decay=weight_decay)
    return torch.optim.RMSprop([w], lr=lr, alpha=0.9, eps=1e-7, weight_decay=weight_decay)


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_batched_update_matches_the_reference_optimiser(name):
    """Each network follows torch's optimiser of its own kind, lr and L2 (float64)."""
    g = torch.Generator().manual_seed(0)
    start = torch.randn(3, 4, 5, generator=g, dtype=torch.float64)
    targets = torch.randn(3, 4, 5, generator=g, dtype=torch.float64)
    lr, l2 = torch.tensor([1e-2, 3e-2, 1e-3]), torch.tensor([0.0, 1e-2, 1e-1])
    kind = torch.full((3,), OPTIMIZERS.index(name))
    batched = start.clone().requires_grad_()
    opt = BatchedOptimizer([batched], [True], kind, lr, l2)
    for _ in range(6):
        ((batched - targets) ** 3).abs().sum().backward()
        opt.step()
    for b in range(3):
        w = start[b].clone().requires_grad_()
        ref = reference(name, w, lr[b].item(), 2 * l2[b].item())
        for _ in range(6):
            ref.zero_grad()
            ((w - targets[b]) ** 3).abs().sum().backward()
            ref.step()
        # Adam's eps sits on the uncorrected second moment (Keras), so allow for it
        assert torch.allclose(batched[b].detach(), w.detach(), rtol=0, atol=1e-5)
        assert (w - start[b]).abs().max() > 5e-3
    assert not torch.allclose(batched[0], batched[1])


def test_l2_applies_to_flagged_tensors_only():
    w = torch.ones(2, 3, requires_grad=True)
    b = torch.ones(2, 3, requires_grad=True)
    opt = BatchedOptimizer([w, b], [True, False], torch.zeros(2, dtype=torch.long),
                           torch.tensor([0.1, 0.1]), torch.tensor([0.5, 0.0]))
    (w.sum() * 0 + b.sum() * 0).backward()
    opt.step()
    # SGD with momentum: first step is lr * grad; grad of the L2 term is 2 * l2 * w
    assert torch.allclose(w[0], torch.full((3,), 1 - 0.1 * 2 * 0.5)) and torch.equal(w[1].detach(), torch.ones(3))
    assert torch.equal(b.detach(), torch.ones(2, 3))


def one_network(ws: WeightSpace, b: int, x: torch.Tensor) -> torch.Tensor:
    """Network ``b`` of ``ws`` on its inputs ``x (N, C, H, W)``, one torch layer at a time,
    each residual adding the first min(width) channels of its source's activated output."""
    acts = {"relu": torch.relu, "tanh": torch.tanh, "gelu": torch.nn.functional.gelu}
    values = [x]
    for k, (layer, (w, bias)) in enumerate(zip(ws.spec.layers, ws)):
        if layer.kind == "linear":
            x = torch.nn.functional.linear(x.mean(dim=(-2, -1)), w[b], bias[b])
        else:
            x = torch.nn.functional.conv2d(x, w[b], bias[b], stride=layer.stride, padding=layer.padding).clone()
        for (src, dst), joined in zip(ws.spec.residual, ws.spec.residual_joined):
            if dst == k + 1:
                x[:, :joined] += values[src][:, :joined]
        x = acts.get(layer.activation, lambda t: t)(x)
        values.append(x)
    return x


@pytest.mark.parametrize("spec", [RESIDUAL_CNN, UNEQUAL_CNN], ids=["equal", "unequal"])
def test_train_forward_without_dropout_is_forward(spec):
    g = torch.Generator().manual_seed(0)
    ws = WeightSpace.from_flat(spec, torch.randn(3, spec.num_params, generator=g, dtype=torch.float64) * 0.3)
    x = torch.randn(3, 5, 1, 8, 8, generator=g, dtype=torch.float64)
    out = train_forward(ws, x, torch.zeros(3), g)
    assert torch.equal(out, forward(ws, x))
    for b in range(3):
        assert torch.allclose(out[b], one_network(ws, b, x[b]), rtol=0, atol=1e-12)
    # dropout acts per network: only the network with a nonzero rate changes
    dropped = train_forward(ws, x, torch.tensor([0.0, 0.5, 0.0]), g)
    assert torch.equal(dropped[0], out[0]) and torch.equal(dropped[2], out[2])
    assert not torch.allclose(dropped[1], out[1])


def test_init_schemes_and_std():
    n = 3000
    hp = hyperparameters(n, init=torch.arange(n) % 3, init_std=0.05)
    ws = init_cnns(RESIDUAL_CNN, hp, torch.Generator().manual_seed(0))
    w = ws.weights[1]  # fan_in 4 * 25 = 100, fan_out 100
    # He / Glorot keep their variance despite the truncation; TruncatedNormal(0.05) does not
    expected = {"he_normal": math.sqrt(2 / 100), "glorot_normal": math.sqrt(2 / 200),
                "truncated_normal": 0.05 * TRUNCATED_STD}
    for i, name in enumerate(INITS):
        rows = w[hp.init == i]
        assert rows.std().item() == pytest.approx(expected[name], rel=0.03)
        assert rows.abs().max() <= 2 * expected[name] / TRUNCATED_STD + 1e-6
    assert all(b.abs().max() == 0 for b in ws.biases)


def test_hyperparameters_cover_the_search_space():
    hp = sample_hyperparameters(4000, torch.Generator().manual_seed(0))
    assert 5e-4 <= hp.learning_rate.min() and hp.learning_rate.max() <= 5e-2
    assert hp.learning_rate.log().median().exp() == pytest.approx(math.sqrt(5e-4 * 5e-2), rel=0.15)
    assert 1e-8 <= hp.l2.min() and hp.l2.max() <= 1e-2 and 0 <= hp.dropout.min() and hp.dropout.max() <= 0.7
    assert torch.equal(hp.train_fraction.unique(), torch.tensor([0.1, 0.25, 0.5, 1.0]))
    assert set(hp.optimizer.tolist()) == {0, 1, 2} and set(hp.init.tolist()) == {0, 1, 2}
    assert len(hp[:10]) == 10 and torch.equal(hp[:10].l2, hp.l2[:10])
    assert set(hp.as_dict()) == {"learning_rate", "l2", "dropout", "init_std", "train_fraction", "optimizer", "init"}


def test_networks_train_independently():
    """A diverging network leaves the others' trajectories bit-identical."""
    task, recipe = toy_task(), TrainingRecipe((1, 2), batch_size=16)
    hp = hyperparameters(3, optimizer=torch.tensor([0, 1, 2]), dropout=torch.tensor([0.0, 0.3, 0.1]),
                         train_fraction=torch.tensor([1.0, 0.25, 0.5]))
    calm, acc = train_cnns(RESIDUAL_CNN, hp, task, recipe, (1,))
    wild_hp = Hyperparameters(**{**hp.as_dict(), "learning_rate": torch.tensor([1e6, 1e-2, 1e-2])})
    wild, _ = train_cnns(RESIDUAL_CNN, wild_hp, task, recipe, (1,))
    assert wild[-1].nonfinite_rows()[0] or not torch.allclose(wild[-1].flatten()[0], calm[-1].flatten()[0])
    assert torch.equal(wild[-1].flatten()[1:], calm[-1].flatten()[1:])
    assert len(calm) == 2 and acc.shape == (2, 3)
    assert torch.equal(acc[-1], heldout_accuracy(calm[-1], task.test_images, task.test_labels))


def test_training_learns_in_chunks():
    """Every optimiser learns a toy task (bright vs dark images), 3 + 1 networks at a time
    (6 epochs: every one of seeds 0-9 then reaches > 0.9; 3 epochs did not for most seeds)."""
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 2, (200,), generator=g)
    x = torch.randn(200, 1, 8, 8, generator=g) + (2 * y - 1).reshape(-1, 1, 1, 1) * 0.5
    task = ImageTask(x[:150], y[:150], x[150:], y[150:])
    hp = hyperparameters(4, optimizer=torch.tensor([0, 1, 2, 1]))
    saved, acc = train_cnns(RESIDUAL_CNN, hp, task, TrainingRecipe((1, 6), 16, chunk=3), (0,))
    assert len(saved) == 2 and len(saved[1]) == 4
    assert acc[1].min() > 0.9


def test_recipe_validates_checkpoints():
    assert TrainingRecipe((4, 1, 2, 2)).checkpoints == (1, 2, 4) and TrainingRecipe((4, 1)).epochs == 4
    with pytest.raises(ConfigError, match="epochs >= 1"):
        TrainingRecipe((0, 3))


def test_chunks_draw_independent_streams():
    """A chunk's networks do not depend on the chunks before it, only on (seed, chunk)."""
    task, recipe = toy_task(), TrainingRecipe((1,), batch_size=16, chunk=2)
    hp = hyperparameters(4, optimizer=torch.tensor([0, 1, 2, 1]), dropout=0.2)
    whole, acc = train_cnns(RESIDUAL_CNN, hp, task, recipe, (3, 1))
    alone, _ = cnn_training._train_chunk(RESIDUAL_CNN, hp[2:], task, recipe, chunk_generator(3, 1, 1),
                                         lambda n: None)
    assert torch.equal(whole[0].flatten()[2:], alone[0].flatten())
    other, _ = train_cnns(RESIDUAL_CNN, hp, task, recipe, (3, 2))
    assert not torch.allclose(other[0].flatten(), whole[0].flatten())


def test_store_keeps_finished_chunks_and_resumes_identically(tmp_path, monkeypatch):
    task, recipe = toy_task(), TrainingRecipe((1, 2), batch_size=16, chunk=2)
    hp = hyperparameters(5, optimizer=torch.tensor([0, 1, 2, 1, 0]), dropout=0.1)
    expected, expected_acc = train_cnns(RESIDUAL_CNN, hp, task, recipe, (0, 0))
    real, trained = cnn_training._train_chunk, []

    def stop_after_first(*args, **kwargs):
        if trained:
            raise KeyboardInterrupt
        trained.append(len(args[1]))
        return real(*args, **kwargs)

    store = ChunkStore(tmp_path / "partial")
    monkeypatch.setattr(cnn_training, "_train_chunk", stop_after_first)
    with pytest.raises(KeyboardInterrupt):
        train_cnns(RESIDUAL_CNN, hp, task, recipe, (0, 0), store=store)
    assert sorted(p.name for p in (tmp_path / "partial").iterdir()) == ["cnns-0-0-0.safetensors"]

    trained.clear()
    monkeypatch.setattr(cnn_training, "_train_chunk", lambda *a, **k: (trained.append(len(a[1])), real(*a, **k))[1])
    steps = []
    resumed, acc = train_cnns(RESIDUAL_CNN, hp, task, recipe, (0, 0), steps.append, store)
    assert trained == [2, 1]  # chunk 0 came from the store
    assert sum(steps) == 5 * 2 * 4  # every network's steps are reported, restored ones too
    assert all(torch.equal(a.flatten(), b.flatten()) for a, b in zip(resumed, expected))
    assert torch.equal(acc, expected_acc)
    # a stored chunk that does not match these networks is trained again, not used
    trained.clear()
    other = Hyperparameters(**{**hp.as_dict(), "learning_rate": hp.learning_rate * 2})
    train_cnns(RESIDUAL_CNN, other, task, recipe, (0, 0), store=store)
    assert trained == [2, 2, 1]
