"""The measurements of ``scripts/bench_methods.py``: FLOPs on a model whose count is known
(the flat MLP: forward and weight gradients of every layer, input gradients of all but the
first, whose input needs none), the extrapolation of the count from small batches for every
method, the step memory and the table."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import baselines  # noqa: F401
import methods  # noqa: F401
from datasets.method_table import METHODS, build_method
from scripts.bench_methods import Row, count_flops, make_loss, make_step, profiled_step, render, siren_batch

BATCH = 32
CPU = torch.device("cpu")


def _setup(name: str):
    torch.manual_seed(0)
    task, weights, targets = siren_batch(BATCH, CPU)
    model = build_method(name, task, profile="quick")
    return task, model, torch.optim.AdamW(model.parameters()), weights, targets


def test_flops_of_the_flat_mlp_are_counted_exactly():
    task, model, optimiser, weights, targets = _setup("mlp")
    widths = [task.spec.num_params] + [model.hparams["hidden"]] * (model.hparams["layers"] - 1) + [10]
    products = [a * b for a, b in zip(widths, widths[1:])]
    expected = 2 * BATCH * (2 * sum(products) + sum(products[1:]))
    assert count_flops(make_loss(model, "fp32", CPU), optimiser, weights, targets) == expected
    assert optimiser.state  # it ended with an optimiser step


@pytest.mark.parametrize("name", list(METHODS))
def test_extrapolated_flops_equal_the_count_on_the_whole_batch(name):
    _, model, optimiser, weights, targets = _setup(name)
    loss = make_loss(model, "fp32", CPU)
    with FlopCounterMode(display=False) as counter:
        loss(weights, targets).backward()
    assert count_flops(loss, optimiser, weights, targets) == counter.get_total_flops() > 0


def test_step_memory_counts_gradients_and_activations():
    _, model, optimiser, weights, targets = _setup("mlp")
    loss = make_loss(model, "fp32", CPU)
    count_flops(loss, optimiser, weights, targets)
    memory, seconds = profiled_step(make_step(loss, optimiser, weights, targets), optimiser, CPU)
    gradients = 4 * sum(p.numel() for p in model.parameters())
    assert gradients < memory < 4 * gradients  # gradients, activations and optimiser temporaries
    assert seconds > 0


def test_markdown_table():
    rows = [Row("mlp", "quick", 10, 1000.0, 2e6, 2.0, 2048.0, 3)]
    lines = render(rows, peak=4.0, markdown=True).splitlines()
    assert lines[0].startswith("| method | profile |") and lines[1].startswith("|---|---|---:")
    assert lines[2] == "| mlp | quick | 10 | 1,000 | 2.0 | 2.0 | 50.0 | 2 | 3 |"
