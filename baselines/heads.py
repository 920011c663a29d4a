"""Small building blocks shared by the baselines."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


def mlp(in_dim: int, hidden: int, out_dim: int, layers: int = 2, dropout: float = 0.0) -> nn.Sequential:
    """``layers`` linear layers with ReLU (and dropout) between them."""
    dims = [in_dim] + [hidden] * (layers - 1) + [out_dim]
    mods: list[nn.Module] = []
    for i in range(len(dims) - 1):
        mods.append(nn.Linear(dims[i], dims[i + 1]))
        if i < len(dims) - 2:
            mods.append(nn.ReLU())
            if dropout:
                mods.append(nn.Dropout(dropout))
    return nn.Sequential(*mods)


class BatchStandardise(nn.BatchNorm1d):
    """Batch norm that falls back to its running statistics for a one-sample training batch
    (the harness's last batch can be that small; plain batch norm raises on it)."""

    def forward(self, x: Tensor) -> Tensor:
        if self.training and x.shape[0] < 2:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                                False, 0.0, self.eps)
        return super().forward(x)
