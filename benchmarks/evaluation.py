"""The test split's own code path: evaluated once, at the selected checkpoint, together
with the robustness transforms of the suite."""

from __future__ import annotations

import torch
from torch import nn

from benchmarks.metrics import compute
from benchmarks.protocol import predict
from benchmarks.robustness import transformed, transforms_for
from benchmarks.suites import Suite
from datasets.collection import WeightDataset


def evaluate_test(model: nn.Module, dataset: WeightDataset, suite: Suite, *, batch_size: int,
                  device: torch.device, seed: int) -> dict:
    """Test metrics, and per robustness transform: the metrics on the transformed test split,
    the mean absolute change of the model's outputs, and the verified function error."""
    test = dataset.test_split()
    base = predict(model, test.weights, batch_size, device)
    result = {"test": compute(suite.metrics, base, test.targets), "robustness": {}}
    for transform in transforms_for(suite.name, dataset.specs):
        moved, error = transformed(test.weights, transform, seed)
        outputs = predict(model, moved, batch_size, device)
        result["robustness"][transform.name] = {
            "test": compute(suite.metrics, outputs, test.targets),
            "output_change": (outputs - base).abs().mean().item(),
            "function_error": error,
        }
    return result
