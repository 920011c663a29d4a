"""Data cards: the facts a user checks before trusting a dataset, as a dict and as text."""

from __future__ import annotations

from torch import Tensor

from datasets.dataset_table import DatasetInfo
from datasets.weights import MixedWeights, WeightSpace, Weights, as_mixed

# Per-layer std of the published DWSNets MNIST INRs (Navon et al. 2023), for comparison.
PUBLISHED_MNIST_INR_STD = {"weights": [0.0628, 0.0183, 0.1179], "biases": [0.0213, 0.0110, 0.0999]}
HIDDEN_KEYS = ("name", "fingerprint", "checksums", "recipe")


def layer_statistics(ws: WeightSpace) -> dict[str, list[float]]:
    """Per-layer mean and std of weights and biases over all networks."""
    return {
        "weight_mean": [round(w.mean().item(), 5) for w in ws.weights],
        "weight_std": [round(w.std().item(), 5) if w.numel() > 1 else 0.0 for w in ws.weights],
        "bias_mean": [round(b.mean().item(), 5) for b in ws.biases],
        "bias_std": [round(b.std().item(), 5) if b.numel() > 1 else 0.0 for b in ws.biases],
    }


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


def render_card(card: dict) -> str:
    """The card as aligned ``key: value`` lines, nested dicts indented."""
    lines = [f"Data card: {card.get('name', '?')} (fingerprint {card.get('fingerprint', '?')})"]

    def walk(d: dict, indent: int) -> None:
        for key, value in d.items():
            if key in HIDDEN_KEYS:
                continue
            if isinstance(value, dict):
                lines.append(" " * indent + f"{key}:")
                walk(value, indent + 2)
            else:
                lines.append(" " * indent + f"{key}: {value}")

    walk(card, 2)
    return "\n".join(lines)
