"""INR editing (``--suite edit``): predict a change of every weight and bias that makes an
INR render its image *dilated* (Neural Graphs, Kofinas et al. 2024, Table 2; NFN, Zhou et
al. 2023, Table 6).

For every network the target is its own image dilated with a 3x3 square structuring
element (the authors use ``cv2.dilate(img, np.ones((3, 3)))``, whose border is ignored:
a 3x3 max filter with ``-inf`` outside the image is the same operation). A method built for
the task ``"edit"`` maps a batch of weights to a batch of weight *changes* of the same
architecture; the harness adds them to the input, renders the edited INR on the image's
pixel grid (batched functional evaluation, the DWSNets 'xy' grid) and scores the pixel MSE
against the dilated image on the [0, 1] scale (tables show it x 10^-2, as the papers do).
Rendering is part of the model the protocol trains, so the loss is the same MSE.

Robustness here means equivariance: a permutation (or another symmetry) of the input
network must move the predicted change the same way, so the *rendered* result does not
change; the robustness columns measure exactly that change of the rendered images. The
chance level is the identity edit: the MSE of the unedited INR against the dilated image.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from datasets.dataset_table import DatasetInfo
from datasets.errors import ConfigError
from datasets.functional import forward
from datasets.inr_fitting import pixel_grid
from datasets.weight_dataset import Split, WeightDataset
from datasets.weights import WeightSpace


def dilate(images: Tensor) -> Tensor:
    """Grey-scale dilation of ``(N, C, H, W)`` images with a 3x3 square: every pixel
    becomes the maximum over its neighbourhood inside the image (cv2.dilate's default)."""
    return F.max_pool2d(images, kernel_size=3, stride=1, padding=1)


def as_signal(images: Tensor) -> Tensor:
    """``(N, C, H, W)`` images as the ``(N, H * W * C)`` vectors a SIREN renders on
    :func:`~datasets.inr_fitting.pixel_grid` (x fastest, channels last)."""
    return images.flatten(2).transpose(1, 2).flatten(1)


class Rendered(nn.Module):
    """``model``'s predicted change added to the input networks, rendered on the pixel
    grid: ``(B, H * W * C)``."""

    def __init__(self, model: nn.Module, height: int, width: int) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("grid", pixel_grid(height, width), persistent=False)

    def forward(self, weights: WeightSpace) -> Tensor:
        delta = self.model(weights)
        edited = WeightSpace(weights.spec, tuple(w + d for w, d in zip(weights.weights, delta.weights)),
                             tuple(b + d for b, d in zip(weights.biases, delta.biases)))
        return forward(edited, self.grid.to(weights.dtype)).flatten(1)


def _pixels(dataset: WeightDataset) -> dict[str, Tensor]:
    pixels = {name: split.extras.get("pixels") for name, split in dataset.splits().items()}
    if any(p is None for p in pixels.values()) or dataset.heterogeneous:
        raise ConfigError(f"the edit suite needs INRs that carry their images; {dataset.name} does not "
                          f"(published files keep no images): use digits-inr or an INR collection built from images")
    return pixels


def edit_dataset(dataset: WeightDataset) -> WeightDataset:
    """``dataset`` with every target replaced by the dilated image of its network, as a
    rendered signal in [0, 1], and the task ``"edit"``."""
    pixels = _pixels(dataset)
    channels, height, width = next(iter(pixels.values())).shape[1:]
    splits = {name: Split(split.weights, as_signal(dilate(pixels[name].float() / 255)), split.extras)
              for name, split in dataset.splits().items()}
    info = DatasetInfo(dataset.info.name, ("edit",), "edit", height * width * channels, dataset.info.description,
                       dataset.info.source, dataset.info.licence, dataset.info.version)
    card = {**dataset.card, "edit": {"target": "the network's image dilated with a 3x3 square (cv2.dilate)",
                                     "image": [int(channels), int(height), int(width)]}}
    return WeightDataset(info, splits["train"], splits["val"], splits["test"], card, dataset.fingerprint)


def wrap(model: nn.Module, dataset: WeightDataset) -> nn.Module:
    """The method's module rendering its edit on the dataset's pixel grid."""
    _, height, width = dataset.card["edit"]["image"]
    return Rendered(model, height, width)


def identity_chance(dataset: WeightDataset) -> tuple[float, float]:
    """The pixel MSE of the unedited validation INRs against their dilated images."""
    val = dataset.val
    _, height, width = dataset.card["edit"]["image"]
    with torch.no_grad():
        rendered = forward(val.weights, pixel_grid(height, width)).flatten(1)
    return (rendered - val.targets).pow(2).mean().item(), 0.0
