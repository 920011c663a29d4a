"""An outside method for wsbench: statistics of each neuron's incoming weights, pooled per layer.

Invariant to permutations of hidden neurons. Benchmark it:
    python -m benchmarks.run --suite inr --plugin examples/neuron_stats.py --methods neuron-stats
"""
import torch
from torch import nn

import wsbench


class NeuronStats(nn.Module):
    def __init__(self, task: wsbench.TaskInfo, hidden: int) -> None:
        super().__init__()
        self.normalise = wsbench.Normaliser(task.stats)
        self.phi = nn.Sequential(nn.Linear(5, hidden), nn.ReLU(), nn.Linear(hidden, hidden))
        self.rho = nn.Sequential(nn.Linear(len(task.spec.layers) * hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, task.out_dim))

    def forward(self, weights: wsbench.WeightSpace) -> torch.Tensor:
        pooled = []
        for w, b in self.normalise(weights):  # per layer: (B, neurons, inputs...), (B, neurons)
            rows = w.flatten(2)
            stats = torch.stack([rows.mean(2), rows.std(2, correction=0), rows.amax(2), rows.amin(2), b], -1)
            pooled.append(self.phi(stats).mean(1))  # a mean over neurons: their order does not matter
        return self.rho(torch.cat(pooled, -1))


@wsbench.register_method("neuron-stats", profiles={"quick": {"hidden": 64}},
                         symmetries=("permutation",), blind_to=("permute_rows_only",))
def build(task: wsbench.TaskInfo, hidden: int) -> nn.Module:
    return NeuronStats(task, hidden)
