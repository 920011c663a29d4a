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

from datasets.errors import UnsupportedArchitecture
from datasets.method_table import MethodInfo
from datasets.normalisation import LayerStats
from datasets.spec import ArchSpec, shared_shape
from datasets.weight_dataset import TaskInfo, WeightDataset
from datasets.weights import Weights, as_shape


class SharedShape(nn.Module):
    """``model`` built for ``spec``, fed any batch whose networks have ``spec``'s shapes."""

    def __init__(self, model: nn.Module, spec: ArchSpec) -> None:
        super().__init__()
        self.model, self.spec = model, spec

    def forward(self, weights: Weights) -> Tensor:
        return self.model(as_shape(weights, self.spec))


def method_task(method: MethodInfo, dataset: WeightDataset) -> tuple[TaskInfo, ArchSpec | None]:
    """What ``method`` is built for on ``dataset``: the dataset's task, or, for a method
    that takes one architecture on networks that differ only in activation, the task of
    their shared weight shape (returned too, to wrap the model with :class:`SharedShape`).
    ``UnsupportedArchitecture`` if the method cannot be built for the dataset's task."""
    if dataset.task not in method.tasks:
        raise UnsupportedArchitecture(f"{method.name} has no weight-space output for the {dataset.task} task")
    if not dataset.heterogeneous or method.heterogeneous:
        return dataset.task_info(), None
    shape = shared_shape(dataset.specs)
    if shape is None:
        raise UnsupportedArchitecture(f"{method.name} takes one architecture; {dataset.name} "
                                      f"has {len(dataset.specs)} with different weight shapes")
    stats = LayerStats.of(as_shape(dataset.train.weights, shape))
    return TaskInfo((shape,), dataset.out_dim, dataset.task, {shape: stats}), shape
