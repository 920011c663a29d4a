"""DeepSets over the neurons of a network (Zaheer et al. 2017, "Deep Sets", Theorem 2:
f(X) = rho(pool_x phi(x))), in the style of the inr2vec encoder (De Luigi et al. 2023, "Deep
Learning on Implicit Neural Representations of Shapes", section 3: a shared MLP on every
weight-matrix row with its bias, then pooling over rows), the set baseline of the weight-space
literature.

One set element per neuron of neuron layers 1..L (one row of layer ``k`` with its bias): the
bias first, then the row's incoming weights (conv: every kernel tap of every input channel),
zero-padded to a common length, plus a learned embedding of the layer (added after the first
linear map of phi, which equals concatenating a one-hot layer code). Elements pass the shared
MLP phi, are pooled over the whole set, and rho maps the pooled vector to the output.

Exact invariance. A row of layer ``k >= 1`` is indexed by the neurons of hidden layer ``k``,
which a symmetry permutes; a set model over raw rows (inr2vec) is therefore *not* invariant.
We make every element invariant in the simplest way: the incoming weights of a row whose inputs
are hidden neurons are sorted (conv: sorted across input channels separately for every kernel
tap). Rows of the first layer keep their order (inputs are fixed). Sorting and set pooling make
the model exactly invariant to ``permute_hidden``. Documented limitation: it is equally
invariant to ``permute_rows_only`` (a non-symmetry), since it never sees which neuron feeds
which; it does see which bias belongs to which row.

Profiles: quick: phi 2 layers of 256, mean pooling, rho 2 layers of 256. Paper: inr2vec-sized
(phi 4 layers of 512 where inr2vec uses 512-512-1024-1024, max pooling as inr2vec; rho 3 layers
of 512). Parameter counts for the SIREN 2-32-32-1 input with 10 classes: paper 1,337,354;
quick 143,626. Deliberate differences from inr2vec: sorted rows (above), a layer embedding
instead of a fixed stacking order, no batch norm, per-layer input normalisation.

Mixed architectures (``heterogeneous=True``): rows are padded to the longest row of any
architecture in the dataset; layer ``k`` uses embedding ``k`` except the last layer, which
uses the last embedding, so input and output layers line up across depths.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from baselines.heads import mlp
from datasets.normalisation import Normaliser
from datasets.method_table import register_method
from datasets.spec import ArchSpec
from datasets.weight_dataset import TaskInfo
from datasets.weights import WeightSpace, Weights, as_mixed

PROFILES = {"quick": {"phi_hidden": 256, "phi_layers": 2, "rho_hidden": 256, "rho_layers": 2, "pool": "mean"},
            "paper": {"phi_hidden": 512, "phi_layers": 4, "rho_hidden": 512, "rho_layers": 3, "pool": "max"}}
POOLS = ("mean", "sum", "max")


def row_length(spec: ArchSpec) -> int:
    """Longest set element of ``spec``: bias plus every incoming weight of one neuron."""
    return max(layer.in_features * layer.kernel[0] * layer.kernel[1] + 1 for layer in spec.layers)


def row_elements(ws: WeightSpace, length: int, slots: int) -> tuple[Tensor, Tensor]:
    """``(B, R, length)`` set elements (one per non-input neuron) and their ``(R,)`` layer slots."""
    num_layers = len(ws.spec.layers)
    if num_layers > slots or row_length(ws.spec) > length:
        raise ValueError(f"deepsets was built for at most {slots} layers and rows of {length}, "
                         f"got {ws.spec.describe()}")
    elements, ids = [], []
    for k, (layer, (w, b)) in enumerate(zip(ws.spec.layers, ws)):
        batch = w.shape[0]
        rows = w.reshape(batch, layer.out_features, layer.in_features, -1)  # (B, out, in, taps)
        if k > 0:  # inputs are hidden neurons: forget their order
            rows = rows.sort(dim=2).values
        rows = rows.transpose(2, 3).reshape(batch, layer.out_features, -1)
        element = torch.cat([b.unsqueeze(-1), rows], dim=-1)
        elements.append(F.pad(element, (0, length - element.shape[-1])))
        slot = k if k < num_layers - 1 else slots - 1
        ids.append(torch.full((layer.out_features,), slot, dtype=torch.long, device=w.device))
    return torch.cat(elements, dim=1), torch.cat(ids)


class DeepSets(nn.Module):
    """Per-layer normalisation -> sorted-row set elements -> phi -> pool -> rho."""

    def __init__(self, info: TaskInfo, phi_hidden: int, phi_layers: int, rho_hidden: int,
                 rho_layers: int, pool: str) -> None:
        super().__init__()
        if pool not in POOLS:
            raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")
        self.length = max(row_length(spec) for spec in info.specs)
        self.slots = max(len(spec.layers) for spec in info.specs)
        self.pool = pool
        self.hparams = {"phi_hidden": phi_hidden, "phi_layers": phi_layers, "rho_hidden": rho_hidden,
                        "rho_layers": rho_layers, "pool": pool, "row_length": self.length}
        self.normalise = Normaliser(info.stats)
        self.embed_row = nn.Linear(self.length, phi_hidden)
        self.embed_layer = nn.Embedding(self.slots, phi_hidden)
        rest: list[nn.Module] = [nn.ReLU()]
        for _ in range(phi_layers - 1):
            rest += [nn.Linear(phi_hidden, phi_hidden), nn.ReLU()]
        self.phi = nn.Sequential(*rest)
        self.rho = mlp(phi_hidden, rho_hidden, info.out_dim, rho_layers)

    def encode(self, ws: WeightSpace) -> Tensor:
        """``(B, phi_hidden)``: the pooled set of one architecture group."""
        elements, ids = row_elements(ws, self.length, self.slots)
        h = self.phi(self.embed_row(elements) + self.embed_layer(ids))
        if self.pool == "max":
            return h.max(dim=1).values
        return h.mean(dim=1) if self.pool == "mean" else h.sum(dim=1)

    def forward(self, weights: Weights) -> Tensor:
        return self.rho(as_mixed(self.normalise(weights)).apply(self.encode))


@register_method("deepsets", family="set", profiles=PROFILES, heterogeneous=True, blind_to=("permute_rows_only",),
                 paper="Zaheer et al. 2017 / De Luigi et al. 2023 (set of neuron rows)")
def build_deepsets(task: TaskInfo, **hparams) -> nn.Module:
    return DeepSets(task, **hparams)
