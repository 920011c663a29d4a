"""Data cards: the facts a user checks before trusting a dataset, as a dict and as text."""

from __future__ import annotations

from torch import Tensor

from datasets.dataset_table import DatasetInfo
from datasets.weights import MixedWeights, WeightSpace, Weights, as_mixed

# Per-layer std over all networks of the published DWSNets INRs (Navon et al. 2023), training
# split, as recomputed from Neural Graphs' experiments/inr_classification/dataset/
# {mnist,fmnist}_statistics.pth (docs/notes/mnist-inr-builder.md).
PUBLISHED_MNIST_INR_STD = {"weights": [0.0628, 0.0183, 0.1179], "biases": [0.0213, 0.0110, 0.0999]}
PUBLISHED_FMNIST_INR_STD = {"weights": [0.0782, 0.0324, 0.1346], "biases": [0.0286, 0.0167, 0.0960]}
HIDDEN_KEYS = ("name", "fingerprint", "checksums", "recipe")


def layer_statistics(ws: WeightSpace) -> dict[str, list[float]]:
    """Per-layer mean and std of weights and biases over all networks."""
    return {
        "weight_mean": [round(w.mean().item(), 5) for w in ws.weights],
        "weight_std": [round(w.std().item(), 5) if w.numel() > 1 else 0.0 for w in ws.weights],
        "bias_mean": [round(b.mean().item(), 5) for b in ws.biases],
        "bias_std": [round(b.std().item(), 5) if b.numel() > 1 else 0.0 for b in ws.biases],
    }


def published_comparison(ws: WeightSpace, published: dict[str, list[float]], against: str) -> dict:
    """Per layer, our weight and bias std over all networks beside the ``published`` ones
    (``{"weights": [...], "biases": [...]}``, one per layer) and ours / published;
    ``against`` names the published networks."""
    rows = []
    for layer, (weight, bias) in enumerate(zip(ws.weights, ws.biases), 1):
        for kind, tensor, key in (("weight", weight, "weights"), ("bias", bias, "biases")):
            ours, theirs = tensor.std().item(), published[key][layer - 1]
            rows.append({"layer": layer, "tensor": kind, "ours": round(ours, 4), "published": theirs,
                         "ratio": round(ours / theirs, 3)})
    return {"against": f"{against}: per-layer std over all networks", "rows": rows}


def summary(values: Tensor) -> dict[str, float]:
    """min / 5% / median / mean / max of a 1-D tensor."""
    v = values.double().flatten()
    return {"min": round(v.min().item(), 3), "p05": round(v.quantile(0.05).item(), 3),
            "median": round(v.median().item(), 3), "mean": round(v.mean().item(), 3),
            "max": round(v.max().item(), 3)}


def describe_architectures(weights: Weights) -> list[dict]:
    """One entry per architecture: description, parameter count, number of networks."""
    return [{"architecture": g.spec.describe(), "parameters": g.spec.num_params, "networks": len(g)}
            for g in as_mixed(weights).groups]


def card_summary(splits: dict, info: DatasetInfo) -> dict:
    """The fields every card has: networks per split, architectures with their per-layer
    statistics, and the class balance (classification) or target summary (regression)."""
    everything = MixedWeights.cat([as_mixed(s.weights) for s in splits.values()])
    card = {"networks": {k: len(v) for k, v in splits.items()},
            "architectures": describe_architectures(everything),
            "layer_statistics": {g.spec.describe(): layer_statistics(g) for g in everything.groups if len(g) > 1}}
    if info.task == "classification":
        card["class_balance"] = {k: v.targets.bincount(minlength=info.out_dim).tolist() for k, v in splits.items()}
    else:
        card["targets"] = {k: summary(v.targets) for k, v in splits.items() if len(v)}
    return card


def table_lines(rows: list[dict], indent: int) -> list[str]:
    """Rows of one set of keys as aligned columns under a header line."""
    keys = list(rows[0])
    cells = [keys] + [[str(row[k]) for k in keys] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(keys))]
    return [" " * indent + "  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in cells]


def render_card(card: dict) -> str:
    """The card as aligned ``key: value`` lines, nested dicts indented, lists of rows with
    the same keys as a table."""
    lines = [f"Data card: {card.get('name', '?')} (fingerprint {card.get('fingerprint', '?')})"]

    def walk(d: dict, indent: int) -> None:
        for key, value in d.items():
            if key in HIDDEN_KEYS:
                continue
            if isinstance(value, dict):
                lines.append(" " * indent + f"{key}:")
                walk(value, indent + 2)
            elif is_table(value):
                lines.append(" " * indent + f"{key}:")
                lines.extend(table_lines(value, indent + 2))
            else:
                lines.append(" " * indent + f"{key}: {value}")

    walk(card, 2)
    return "\n".join(lines)


def is_table(value: object) -> bool:
    """Whether ``value`` is a non-empty list of dicts that all have the same keys."""
    return (isinstance(value, list) and bool(value) and all(isinstance(row, dict) for row in value)
            and all(list(row) == list(value[0]) for row in value))
