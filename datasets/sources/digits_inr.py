"""``digits-inr``: the embedded default INR collection.

scikit-learn's bundled 8x8 handwritten digits (1,797 images, 10 classes; no download), one
or more SIRENs per image fitted with the DWSNets recipe (``datasets.inr_fitting``). Split by
image, stratified by class, with a fixed seed: 70% / 10% / 20% of the images, and every
view of an image stays in its image's split.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from datasets.cache import cached
from datasets.card import (class_balance, describe_architectures, layer_statistics,
                           PUBLISHED_MNIST_INR_STD, summary)
from datasets.collection import LoadOptions, Split, WeightDataset
from datasets.inr_fitting import SirenRecipe, fit_sirens
from datasets.registry import register_dataset

SPLIT_SEED = 0
VAL_FRACTION, TEST_FRACTION = 0.1, 0.2
DEFAULTS = {"views": 1, **SirenRecipe(steps=300, lr=3e-3).to_dict()}


def split_images(labels: np.ndarray, seed: int = SPLIT_SEED) -> dict[str, np.ndarray]:
    """Stratified image indices for train / val / test."""
    index = np.arange(len(labels))
    rest, test = train_test_split(index, test_size=TEST_FRACTION, stratify=labels, random_state=seed)
    train, val = train_test_split(rest, test_size=VAL_FRACTION / (1 - TEST_FRACTION),
                                  stratify=labels[rest], random_state=seed)
    return {"train": np.sort(train), "val": np.sort(val), "test": np.sort(test)}


def parse_params(params: dict[str, str], defaults: dict) -> dict:
    """Dataset options given as strings, typed like their defaults; unknown keys refused."""
    unknown = set(params) - set(defaults)
    if unknown:
        raise ValueError(f"unknown dataset option(s) {sorted(unknown)}; valid: {sorted(defaults)}")
    return {**defaults, **{k: type(defaults[k])(v) for k, v in params.items()}}


def build_digits_inr(config: dict, limit: int | None, progress: bool) -> WeightDataset:
    """Fit the SIRENs and assemble the splits (no caching)."""
    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    labels = digits.target
    index = split_images(labels)
    if limit:
        index = {k: v[:limit] for k, v in index.items()}
    recipe = SirenRecipe(**{k: v for k, v in config.items() if k != "views"})
    views = config["views"]
    order = np.concatenate([index[s] for s in ("train", "val", "test")])
    start = time.perf_counter()
    ws, scores = fit_sirens(images[order].repeat_interleave(views, 0), recipe, progress=progress,
                            description="digits-inr: fitting SIRENs")
    seconds = time.perf_counter() - start
    splits, at = {}, 0
    for name in ("train", "val", "test"):
        n = len(index[name]) * views
        rows = slice(at, at + n)
        image_ids = torch.as_tensor(index[name]).repeat_interleave(views)
        splits[name] = Split(ws[rows], torch.as_tensor(labels[image_ids.numpy()], dtype=torch.long),
                             {"psnr": scores[rows], "image": image_ids})
        at += n
    card = {
        "source": "scikit-learn load_digits (UCI optical digits, 8x8, 1,797 images; CC BY 4.0)",
        "networks": {k: len(v) for k, v in splits.items()},
        "architectures": describe_architectures(ws),
        "target": "digit class (10)",
        "views_per_image": views,
        "fit": {"steps": recipe.steps, "lr": recipe.lr, "optimizer": "Adam", "seconds": round(seconds, 1),
                "inrs_per_second": round(len(ws) / seconds, 1)},
        "psnr_db": summary(scores),
        "class_balance": {k: class_balance(v.targets, 10) for k, v in splits.items()},
        "layer_statistics": layer_statistics(ws),
        "published_mnist_inr_std": PUBLISHED_MNIST_INR_STD,
    }
    return WeightDataset("digits-inr", "classification", 10, splits["train"], splits["val"],
                         splits["test"], card)


@register_dataset("digits-inr", suite="inr", embedded=True,
                  description="SIRENs of scikit-learn's 8x8 digits, fitted locally")
def load_digits_inr(opts: LoadOptions) -> WeightDataset:
    """Build (first time) or load the cached ``digits-inr``. Options (``opts.params``):
    ``views``, ``steps``, ``lr``, ``seed``, ``hidden``, ``depth``, ``omega``, ``chunk``."""
    config = parse_params(opts.params, DEFAULTS)
    recipe = {"dataset": "digits-inr", "limit": opts.limit, "split_seed": SPLIT_SEED, **config}
    directory = opts.root / "digits-inr" / (f"limit{opts.limit}" if opts.limit else "full")
    return cached(directory, recipe, lambda: build_digits_inr(config, opts.limit, opts.progress))

