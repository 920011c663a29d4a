"""The batched SIREN fitter and the embedded digits-inr dataset."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from inr_files import fingerprint, load
from sklearn.datasets import load_digits

from datasets.errors import ConfigError
from datasets.functional import forward
from datasets.inr_fitting import SirenRecipe, fit_sirens, pixel_grid, siren_init
from datasets.sources.digits_inr import RECIPE, DigitsInr, split_images
from datasets.spec import siren_spec


def test_grid_is_xy_with_x_fastest():
    grid = pixel_grid(2, 3)
    assert grid.tolist() == [[-1, -1], [0, -1], [1, -1], [-1, 1], [0, 1], [1, 1]]


def test_init_follows_the_dwsnets_recipe():
    ws = siren_init(siren_spec(), 2000, torch.Generator().manual_seed(0))
    bound = (6 / 2) ** 0.5 / 30
    assert ws.weights[0].abs().max() <= bound and ws.weights[0].abs().max() > 0.95 * bound
    assert ws.weights[1].abs().max() <= (6 / 32) ** 0.5 / 30
    assert ws.biases[0].abs().max() == 0 and ws.biases[1].abs().max() == 0
    assert ws.weights[2].abs().max() <= 32 ** -0.5 and ws.biases[2].abs().max() > 0


def test_builder_reaches_30_db_on_digits():
    """The default 2-8-8-1 recipe: median above 30 dB, nine in ten above 23 dB (a published
    MNIST INR's median is about 24 dB)."""
    images = torch.tensor(load_digits().images[:48], dtype=torch.float32)[:, None] / 16
    ws, psnr = fit_sirens(images, RECIPE, progress=False)
    assert ws.spec.widths == (2, 8, 8, 1)
    assert psnr.median() >= 30 and psnr.quantile(0.1) >= 23
    # the stored networks render the images they were fitted to
    rendered = forward(ws, pixel_grid(8, 8)).reshape(48, 8, 8)
    assert (rendered - images[:, 0]).abs().mean() < 0.02


def test_compiled_fitting_is_the_same_recipe():
    images = torch.rand(3, 1, 6, 6, generator=torch.Generator().manual_seed(0))
    recipe = SirenRecipe(steps=5, lr=3e-3, chunk=2)
    eager, eager_psnr = fit_sirens(images, recipe, progress=False)
    compiled, compiled_psnr = fit_sirens(images, recipe, progress=False, compile=True)
    assert torch.allclose(eager.flatten(), compiled.flatten(), atol=1e-5)
    assert torch.allclose(eager_psnr, compiled_psnr, atol=1e-3)


def test_fitting_on_a_device_returns_cpu_tensors_of_the_same_fit():
    """``device`` changes where the chunk is fitted, not the recipe: the CPU gives the default's
    numbers bit for bit, a GPU (where present) the same fit up to float rounding."""
    images = torch.rand(3, 1, 6, 6, generator=torch.Generator().manual_seed(0))
    recipe = SirenRecipe(steps=5, lr=3e-3, chunk=2)
    default, default_psnr = fit_sirens(images, recipe, progress=False)
    on_cpu, cpu_psnr = fit_sirens(images, recipe, progress=False, device="cpu")
    assert torch.equal(default.flatten(), on_cpu.flatten()) and torch.equal(default_psnr, cpu_psnr)
    if torch.cuda.is_available():
        on_gpu, gpu_psnr = fit_sirens(images, recipe, progress=False, device="cuda")
        assert on_gpu.device.type == "cpu" and gpu_psnr.device.type == "cpu"
        assert torch.allclose(default.flatten(), on_gpu.flatten(), atol=1e-4)


def test_the_digits_recipe_and_its_options_are_unchanged():
    """digits-inr's shipped reference records depend on its recipe: the dict that enters its
    card and the options that enter its fingerprint stay these."""
    assert RECIPE.to_dict() == {"hidden": 8, "depth": 2, "omega": 30.0, "steps": 300, "lr": 3e-3, "chunk": 2048,
                                "seed": 0}
    assert sorted(RECIPE.options()) == ["chunk", "depth", "hidden", "lr", "omega", "seed", "steps"]
    assert sorted(DigitsInr.options) == ["augment", "chunk", "depth", "extra_views", "hidden", "lr", "omega",
                                         "seed", "steps", "views"]


def test_splits_are_by_image_stratified_and_fixed():
    labels = load_digits().target
    a, b = split_images(labels), split_images(labels)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not set(a["train"]) & set(a["test"]) and not set(a["val"]) & set(a["test"])
    assert sum(len(v) for v in a.values()) == len(labels)
    test_share = np.bincount(labels[a["test"]], minlength=10) / np.bincount(labels, minlength=10)
    assert np.allclose(test_share, 0.2, atol=0.02)


def test_views_stay_in_their_image_split(tmp_path):
    ds = load("digits-inr", tmp_path, limit=6, views=2, extra_views=0, steps=20)
    images = {s: set(split.extras["image"].tolist()) for s, split in
              (("train", ds.train), ("val", ds.val), ("test", ds.test_split()))}
    assert len(ds.train) == 12 and len(images["train"]) == 6
    assert not images["train"] & images["test"] and not images["val"] & images["test"]
    assert ds.card["views_per_image"] == 2 and ds.card["fit"]["steps"] == 20
    assert set(ds.card["psnr_db"]) >= {"min", "median"} and len(ds.card["class_balance"]["train"]) == 10


def test_extra_views_add_fits_of_training_images_only(tmp_path):
    ds = load("digits-inr", tmp_path, limit=6, views=2, extra_views=3, steps=20)
    per_image = {s: torch.bincount(split.extras["image"]).tolist() for s, split in
                 (("train", ds.train), ("val", ds.val), ("test", ds.test_split()))}
    assert {n for n in per_image["train"] if n} == {5} and len(ds.train) == 30
    assert {n for n in per_image["val"] if n} == {2} and {n for n in per_image["test"] if n} == {2}
    first = ds.train.extras["image"] == ds.train.extras["image"][0]
    assert torch.pdist(ds.train.weights.flatten()[first]).min() > 0  # five distinct fits
    assert ds.card["extra_views_per_training_image"] == 3 and ds.card["views_per_image"] == 2


def test_shipped_records_are_of_the_default_data_and_every_option_is_another_dataset(tmp_path):
    """The reference records were run on the default build (20 fits per training image, 4 per
    evaluation image); a different number of fits of either kind is another dataset."""
    records = Path(__file__).parents[2] / "results" / "records" / "quick" / "inr" / "digits-inr"
    shipped = {json.loads(f.read_text())["config"]["dataset_fingerprint"] for f in records.glob("*/*/seed*.json")}
    default = fingerprint("digits-inr", tmp_path)
    assert shipped == {default} and fingerprint("digits-inr", tmp_path, extra_views=16, views=4) == default
    assert len({default, fingerprint("digits-inr", tmp_path, extra_views=0),
                fingerprint("digits-inr", tmp_path, extra_views=2), fingerprint("digits-inr", tmp_path, views=5)}) == 4


def test_unknown_dataset_option_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"digits-inr: unknown option\(s\) colour; valid: augment, chunk, depth"):
        load("digits-inr", tmp_path, colour="red")
