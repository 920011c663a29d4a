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

from datasets.card import summary
from datasets.dataset_table import DatasetInfo, register_dataset
from datasets.inr_fitting import SirenRecipe, fit_sirens
from datasets.options import Option
from datasets.source import Built, DatasetSource
from datasets.weight_dataset import SPLITS, Split

SPLIT_SEED = 0
VAL_FRACTION, TEST_FRACTION = 0.1, 0.2
RECIPE = SirenRecipe(steps=300, lr=3e-3)


def split_images(labels: np.ndarray, seed: int = SPLIT_SEED) -> dict[str, np.ndarray]:
    """Stratified image indices for train / val / test."""
    index = np.arange(len(labels))
    rest, test = train_test_split(index, test_size=TEST_FRACTION, stratify=labels, random_state=seed)
    train, val = train_test_split(rest, test_size=VAL_FRACTION / (1 - TEST_FRACTION),
                                  stratify=labels[rest], random_state=seed)
    return {"train": np.sort(train), "val": np.sort(val), "test": np.sort(test)}


class DigitsInr(DatasetSource):
    """SIRENs of scikit-learn's digits, ``views`` fits (different initialisations) per image."""

    options = {"views": Option(1, "SIRENs fitted per image (different initialisations)", low=1, high=1000),
               **RECIPE.options()}

    def recipe(self) -> dict:
        return {"split_seed": SPLIT_SEED}

    def process(self) -> Built:
        digits = load_digits()
        images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
        labels = digits.target
        index = split_images(labels)
        if self.load_options.limit:
            index = {k: v[:self.load_options.limit] for k, v in index.items()}
        recipe, views = SirenRecipe.of(self.config), self.config["views"]
        order = np.concatenate([index[s] for s in SPLITS])
        start = time.perf_counter()
        ws, scores = fit_sirens(images[order].repeat_interleave(views, 0), recipe, progress=self.progress,
                                description="digits-inr: fitting SIRENs", store=self.checkpoints)
        seconds = time.perf_counter() - start
        splits, at = {}, 0
        for name in SPLITS:
            n = len(index[name]) * views
            rows = slice(at, at + n)
            image_ids = torch.as_tensor(index[name]).repeat_interleave(views)
            splits[name] = Split(ws[rows], torch.as_tensor(labels[image_ids.numpy()], dtype=torch.long),
                                 {"psnr": scores[rows], "image": image_ids})
            at += n
        card = {"target": "digit class (10)", "views_per_image": views,
                "split": "by image, stratified, seed 0: 70% / 10% / 20%",
                "fit": {"steps": recipe.steps, "lr": recipe.lr, "optimizer": "Adam", "seconds": round(seconds, 1),
                        "inrs_per_second": round(len(ws) / max(seconds, 1e-9), 1)},
                "psnr_db": summary(scores)}
        return Built(splits["train"], splits["val"], splits["test"], card)


register_dataset(DatasetInfo(
    "digits-inr", ("inr",), "classification", 10, embedded=True,
    description="SIRENs of scikit-learn's 8x8 digits, fitted locally",
    source="scikit-learn load_digits (UCI optical digits, 8x8, 1,797 images)", licence="CC BY 4.0"), DigitsInr)
