"""``digits-inr``: the embedded default INR collection.

scikit-learn's bundled 8x8 handwritten digits (1,797 images, 10 classes; no download),
SIRENs 2-8-8-1 fitted with the DWSNets recipe (``datasets.inr_fitting``): by default 20 per
training image and 4 per validation or test image (different initialisations). The
published 2-32-32-1 has 18.5 parameters per pixel of an 8x8 digit, so its weights are
mostly initialisation noise and every method sits near chance; 2-8-8-1 has 1.6 (the
published 28x28 MNIST INRs: 1.5), and the views give the methods more networks: with 4 per
image the flat MLP stays at chance, with 20 per training image it learns, and so does every
invariant method, further above it (:data:`REGIME`, measured in docs/notes/digits-inr-default.md). Split by
image, stratified by class, with a fixed seed: 70% / 10% / 20% of the images, and every
view of an image stays in its image's split. Its 25,140 training networks are 5x the
5,028 of the 4-view build that the quick budgets were measured on, so the quick profile
trains 6 epochs here (the same optimiser steps as 30 of those), and the edit suite's 2.

Options that change the data: ``views`` (SIRENs fitted per image from different
initialisations, as the DWSNets views ablation), ``augment`` (that many randomly distorted
copies of every *training* image — rotation, scale, shear and shift drawn with a fixed
seed, resampled bilinearly — added to the training split as new images of the same class;
validation and test keep the original images only), ``extra_views`` (that many further
fits of every *training* image only, as NFN's ``extra_aug`` copies: more training networks
without a distorted image, and evaluation costs unchanged), and the SIREN recipe.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import Tensor

from datasets.card import summary
from datasets.dataset_table import DatasetInfo, register_dataset
from datasets.inr_fitting import SirenRecipe, fit_sirens
from datasets.options import Option
from datasets.source import Built, DatasetSource
from datasets.weight_dataset import SPLITS, Split

SPLIT_SEED = 0
AUGMENT_SEED = 1
VAL_FRACTION, TEST_FRACTION = 0.1, 0.2
MAX_ROTATION, SCALE, MAX_SHEAR, MAX_SHIFT = math.radians(15), (0.9, 1.1), 0.15, 0.15  # shift in [-1, 1] units
RECIPE = SirenRecipe(hidden=8, steps=300, lr=3e-3)
VIEWS, EXTRA_VIEWS = 4, 16
REGIME = ("2-8-8-1 SIRENs (105 parameters, 1.6 per pixel, as the published 28x28 MNIST INRs' 1.5), 4 fits per "
          "image and 16 more per training image by default, instead of the published 2-32-32-1 x 1 (18.5 "
          "parameters per pixel of an 8x8 digit: mostly initialisation noise, every method near chance; with 4 "
          "fits per training image the flat MLP stays at chance); chosen on validation, see docs/notes/digits-inr-default.md")


def distort(images: Tensor, copies: int, seed: int = AUGMENT_SEED) -> Tensor:
    """``copies`` random affine distortions of every image, ``(N * copies, C, H, W)``, image
    major: rotation within +-15 degrees, scale 0.9..1.1, shear within +-0.15, shift within
    +-0.15 of the half-width; bilinear resampling, zero (background) outside."""
    g = torch.Generator().manual_seed(seed)
    n = len(images) * copies
    angle = (torch.rand(n, generator=g) * 2 - 1) * MAX_ROTATION
    scale = SCALE[0] + torch.rand(n, generator=g) * (SCALE[1] - SCALE[0])
    shear = (torch.rand(n, generator=g) * 2 - 1) * MAX_SHEAR
    shift = (torch.rand(n, 2, generator=g) * 2 - 1) * MAX_SHIFT
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin + shear, shift[:, 0]], 1),
                         torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    source = images.repeat_interleave(copies, 0)
    grid = F.affine_grid(theta, list(source.shape), align_corners=False)
    return F.grid_sample(source, grid, mode="bilinear", padding_mode="zeros", align_corners=False).clamp(0, 1)


def split_images(labels: np.ndarray, seed: int = SPLIT_SEED) -> dict[str, np.ndarray]:
    """Stratified image indices for train / val / test."""
    index = np.arange(len(labels))
    rest, test = train_test_split(index, test_size=TEST_FRACTION, stratify=labels, random_state=seed)
    train, val = train_test_split(rest, test_size=VAL_FRACTION / (1 - TEST_FRACTION),
                                  stratify=labels[rest], random_state=seed)
    return {"train": np.sort(train), "val": np.sort(val), "test": np.sort(test)}


class DigitsInr(DatasetSource):
    """SIRENs of scikit-learn's digits, ``views`` fits (different initialisations) per image."""

    options = {"views": Option(VIEWS, "SIRENs fitted per image (different initialisations)", low=1, high=1000),
               "augment": Option(0, "distorted copies of every training image, added as new images", low=0,
                                 high=1000),
               "extra_views": Option(EXTRA_VIEWS, "further SIRENs fitted per training image only (validation "
                                                  "and test keep views)", low=0, high=1000),
               **RECIPE.options()}

    def recipe(self) -> dict:
        return {"split_seed": SPLIT_SEED}

    def process(self) -> Built:
        digits = load_digits()
        images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
        labels = torch.as_tensor(digits.target, dtype=torch.long)
        index = split_images(digits.target)
        if self.load_options.limit:
            index = {k: v[:self.load_options.limit] for k, v in index.items()}
        recipe, views, copies = SirenRecipe.of(self.config), self.config["views"], self.config["augment"]
        extra_views = self.config["extra_views"]
        parts = {name: (images[ids], labels[ids], torch.as_tensor(ids), torch.zeros(len(ids), dtype=torch.long))
                 for name, ids in index.items()}
        if copies:
            train, ids = parts["train"][0], parts["train"][2]
            variant = torch.arange(1, copies + 1).repeat(len(ids))
            extra = (distort(train, copies), labels[ids].repeat_interleave(copies), ids.repeat_interleave(copies),
                     variant)
            parts["train"] = tuple(torch.cat([a, b]) for a, b in zip(parts["train"], extra))
        start = time.perf_counter()
        fits = {name: views + (extra_views if name == "train" else 0) for name in SPLITS}
        everything = torch.cat([parts[s][0].repeat_interleave(fits[s], 0) for s in SPLITS])
        ws, scores = fit_sirens(everything, recipe, progress=self.progress, description="digits-inr: fitting SIRENs",
                                store=self.checkpoints)
        seconds = time.perf_counter() - start
        splits, at = {}, 0
        for name in SPLITS:
            pictures, targets, ids, variant = (t.repeat_interleave(fits[name], 0) for t in parts[name])
            rows = slice(at, at + len(targets))
            pixels = (pictures * 255).round().to(torch.uint8)  # what the SIREN was fitted to, x 255
            splits[name] = Split(ws[rows], targets, {"psnr": scores[rows], "image": ids, "variant": variant,
                                                     "pixels": pixels})
            at += len(targets)
        card = {"target": "digit class (10)", "regime": REGIME, "views_per_image": views,
                "extra_views_per_training_image": extra_views,
                "distorted_copies_per_training_image": copies,
                "split": "by image, stratified, seed 0: 70% / 10% / 20%",
                "fit": {"steps": recipe.steps, "lr": recipe.lr, "optimizer": "Adam", "seconds": round(seconds, 1),
                        "inrs_per_second": round(len(ws) / max(seconds, 1e-9), 1)},
                "psnr_db": summary(scores)}
        return Built(splits["train"], splits["val"], splits["test"], card)


register_dataset(DatasetInfo(
    "digits-inr", ("inr", "edit"), "classification", 10, version=3, embedded=True,
    epochs={("inr", "quick"): 6, ("edit", "quick"): 2},
    description="SIRENs 2-8-8-1 of scikit-learn's 8x8 digits, 20 per training image and 4 per evaluation "
                "image, fitted locally",
    source="scikit-learn load_digits (UCI optical digits, 8x8, 1,797 images)", licence="CC BY 4.0"), DigitsInr)
