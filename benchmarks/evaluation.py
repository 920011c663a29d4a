"""The test split's own code path: evaluated once, at the selected checkpoint, together
with every function-preserving transform the suite measures."""

from __future__ import annotations

import torch
from torch import nn

from benchmarks.metrics import compute
from benchmarks.protocol import TrainConfig, predict
from benchmarks.robustness import transformed, transforms_for
from benchmarks.suites import Suite
from datasets.weight_dataset import WeightDataset


def evaluate_test(model: nn.Module, dataset: WeightDataset, suite: Suite, *, config: TrainConfig,
                  device: torch.device, seed: int) -> dict:
    """Test metrics (and why any is undefined), and per transform that applies to the
    dataset's architectures: the metrics on the transformed test split, the mean absolute
    change of the model's outputs, and the verified function error."""
    test = dataset.test_split()
    base = predict(model, test.weights, config.eval_batch_size, device, config)
    metrics, undefined = compute(suite.metrics, base, test.targets)
    result = {"metrics": metrics, "undefined": undefined, "robustness": {}}
    for transform in transforms_for(suite.transforms, dataset.specs):
        moved, error = transformed(test.weights, transform, seed)
        outputs = predict(model, moved, config.eval_batch_size, device, config)
        result["robustness"][transform.name] = {
            "test": compute(suite.metrics, outputs, test.targets)[0],
            "output_change": (outputs - base).abs().mean().item(),
            "function_error": error,
        }
    return result
