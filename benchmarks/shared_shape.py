"""Networks that differ only in their activations, given to a method that takes one
architecture.

The Small CNN Zoo (and ``digits-cnn-zoo``) mixes ReLU and tanh networks of one weight
shape; NFN, NFT, DWSNet and the flat MLP read the weights, not the activations, and were
published on such zoos. The harness builds those methods for the zoo's shared weight
shape (``datasets.spec.shared_shape``) and wraps them so that every batch reaches them as
one ``WeightSpace`` in batch order. Robustness transforms still act on the networks as they
are (rescaling only ReLU networks) before the wrapper sees them.
"""

from __future__ import annotations

from torch import Tensor, nn

from datasets.collection import WeightDataset
from datasets.normalisation import LayerStats
from datasets.registry import TaskInfo
from datasets.spec import ArchSpec
from datasets.weights import Weights, as_shape


class SharedShape(nn.Module):
    """``model`` built for ``spec``, fed any batch whose networks have ``spec``'s shapes."""

    def __init__(self, model: nn.Module, spec: ArchSpec) -> None:
        super().__init__()
        self.model, self.spec = model, spec
        self.hparams = {**getattr(model, "hparams", {}), "shared_shape": spec.describe()}

    def forward(self, weights: Weights) -> Tensor:
        return self.model(as_shape(weights, self.spec))


def shared_shape_task(dataset: WeightDataset, spec: ArchSpec) -> TaskInfo:
    """Builder input for ``spec``: train-split layer statistics over every network."""
    stats = LayerStats.of(as_shape(dataset.train.weights, spec))
    return TaskInfo((spec,), dataset.out_dim, dataset.task, {spec: stats})
