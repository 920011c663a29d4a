"""pytest-benchmark: one training step (forward, backward, AdamW step) of every registered
method on a batch of 128 SIRENs (2-32-32-1), quick profile.

In the default test run benchmarks are disabled, so each step runs once, as a check that
every method trains. For the figures:
``python -m pytest tests/test_benchmarks/test_speed_train_step.py --benchmark-enable``
(samples per second = 128 x the reported OPS; also in ``extra_info``)."""

import pytest
import torch

import baselines  # noqa: F401
import methods  # noqa: F401
from datasets.inr_fitting import siren_init
from datasets.normalisation import LayerStats
from datasets.method_table import METHODS, build_method
from datasets.weight_dataset import TaskInfo
from datasets.spec import siren_spec

BATCH = 128


@pytest.mark.parametrize("name", list(METHODS))
def test_train_step(benchmark, name):
    torch.manual_seed(0)
    spec = siren_spec()
    ws = siren_init(spec, BATCH, torch.Generator().manual_seed(0))
    targets = torch.randint(0, 10, (BATCH,))
    model = build_method(name, TaskInfo((spec,), 10, "classification", {spec: LayerStats.of(ws)}), profile="quick")
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()

    def step() -> float:
        optimiser.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(ws), targets)
        loss.backward()
        optimiser.step()
        return loss.item()

    loss = benchmark(step)
    assert torch.isfinite(torch.tensor(loss))
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())
    if benchmark.stats:
        benchmark.extra_info["samples_per_second"] = BATCH / benchmark.stats.stats.mean
