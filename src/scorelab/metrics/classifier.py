"""A small CNN classifier, trained by scorelab itself, whose penultimate features image metrics use.

FID and its relatives are defined in the features of an Inception network trained on
ImageNet; no such weights are available offline, and ImageNet features suit 8×8 or
28×28 digits poorly anyway. So images are measured in the features of
:class:`DigitClassifier`, trained on the *training* split of the data set itself
(as Salimans et al. 2016 and the MNIST literature do with a data set's own
classifier). Its numbers are comparable between models measured with the same
classifier, not with published Inception-based figures.

:func:`classifier_for` trains one once per data set and keeps its weights in the
user's cache (:mod:`scorelab.core.cache`) as safetensors.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save
from torch import Tensor, nn

from scorelab import __version__
from scorelab.core.atomic import write_atomic
from scorelab.core.cache import cache_dir
from scorelab.core.errors import DataError, ScorelabError, require_positive_int

FEATURES = 128  # width of the penultimate layer, the features the metrics see
_POOLED = 4  # the convolutional maps are pooled to 4×4 whatever the image size
LEARNING_RATE = 3e-3


class DigitClassifier(nn.Module):
    """A small CNN: two convolutional blocks, a penultimate feature layer and a linear head.

        conv3×3(32) ReLU conv3×3(32) ReLU maxpool2 → conv3×3(64) ReLU conv3×3(64) ReLU
        adaptive-avgpool(4×4) → linear(1024 → features) ReLU → linear(features → classes)

    Works for images [n, C, H, W] with H, W ≥ 8 (after the max-pool the maps are at
    least 4×4, so the adaptive pool only averages), in model space [-1, 1].
    """

    def __init__(self, channels: int, n_classes: int, features: int = FEATURES):
        super().__init__()
        self.channels, self.n_classes = channels, n_classes
        self.body = nn.Sequential(
            nn.Conv2d(channels, 32, 3, padding=1), nn.ReLU(),
            nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(),
            nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(_POOLED), nn.Flatten(),
            nn.Linear(64 * _POOLED * _POOLED, features), nn.ReLU(),
        )
        self.head = nn.Linear(features, n_classes)

    def features(self, x: Tensor) -> Tensor:
        """The penultimate activations [n, features] of images ``x`` [n, C, H, W]."""
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        """Class logits [n, n_classes]."""
        return self.head(self.body(x))


def _check_images(images: Tensor, labels: Tensor | None = None) -> None:
    if images.ndim != 4 or images.shape[2] < 8 or images.shape[3] < 8:
        raise DataError(f"images must have shape [n, C, H, W] with H, W >= 8, got {tuple(images.shape)}")
    if labels is not None and (labels.shape != images.shape[:1] or labels.dtype != torch.long):
        raise DataError(f"labels must be a long tensor of shape [{len(images)}], got {labels.dtype} "
                        f"of shape {tuple(labels.shape)}")
    if labels is not None and len(labels) and int(labels.min()) < 0:
        raise DataError(f"labels must be class indices >= 0, got {int(labels.min())}")


def _shifted(images: Tensor, generator: torch.Generator) -> Tensor:
    """Each image moved by a random −1, 0 or +1 pixels along each axis, edges repeated into the gap."""
    height, width = images.shape[2:]
    padded = F.pad(images, (1, 1, 1, 1), mode="replicate")
    shifts = torch.randint(0, 3, (len(images), 2), generator=generator).to(images.device)
    out = torch.empty_like(images)
    for dy in range(3):
        for dx in range(3):
            rows = ((shifts[:, 0] == dy) & (shifts[:, 1] == dx)).nonzero().squeeze(1)
            out[rows] = padded[rows, :, dy : dy + height, dx : dx + width]
    return out


def train_classifier(
    images: Tensor,
    labels: Tensor,
    *,
    seed: int = 0,
    epochs: int = 30,
    batch_size: int = 64,
    augment: bool = False,
) -> DigitClassifier:
    """A :class:`DigitClassifier` for ``images`` [N, C, H, W] in [-1, 1] and ``labels`` [N] (long).

    Adam (Kingma & Ba 2015) on the cross-entropy, the learning rate :data:`LEARNING_RATE`
    annealed to 0 on a cosine (Loshchilov & Hutter 2017), minibatches reshuffled each epoch; with
    ``augment`` each batch is shifted by up to one pixel (:func:`_shifted`). The number
    of classes is ``labels.max() + 1``. Runs on the images' device. Initialisation
    is seeded by ``seed`` under a forked global RNG, and shuffling and shifts come from
    a generator seeded by it, so the global random state is untouched and the same
    call on the same machine returns the same weights. Returns the model in eval mode.

    ``epochs`` are passes over the data: a small set such as sklearn's digits needs
    many, a large one such as MNIST far fewer for the same number of steps.
    """
    _check_images(images, labels)
    require_positive_int("epochs", epochs)
    require_positive_int("batch_size", batch_size)
    if len(images) == 0:
        raise DataError("cannot train a classifier on no images")
    if not bool(torch.isfinite(images).all()):
        raise DataError("images have NaN or infinite values")
    labels = labels.to(images.device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = DigitClassifier(images.shape[1], int(labels.max()) + 1).to(images.device)
    generator = torch.Generator().manual_seed(seed)
    steps_per_epoch = -(-len(images) // batch_size)
    optimiser = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, epochs * steps_per_epoch)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(images), generator=generator).to(images.device)
        for rows in order.split(batch_size):
            batch = _shifted(images[rows], generator) if augment else images[rows]
            loss = F.cross_entropy(model(batch), labels[rows])
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
    return model.eval()


def _batched(function: Callable[[Tensor], Tensor], images: Tensor, batch_size: int) -> Tensor:
    with torch.no_grad():
        return torch.cat([function(batch) for batch in images.split(batch_size)])


def embed(model: DigitClassifier, images: Tensor, *, batch_size: int = 1024) -> Tensor:
    """The features [n, features] of ``images`` [n, C, H, W], in batches and without gradients."""
    _check_images(images)
    return _batched(model.features, images, batch_size)


def predict(model: DigitClassifier, images: Tensor, *, batch_size: int = 1024) -> Tensor:
    """The most likely class [n] of each of ``images``."""
    _check_images(images)
    return _batched(model, images, batch_size).argmax(1)


def accuracy(model: DigitClassifier, images: Tensor, labels: Tensor, *, batch_size: int = 1024) -> float:
    """The fraction of ``images`` whose most likely class is their label."""
    _check_images(images, labels)
    predicted = predict(model, images, batch_size=batch_size)
    return float((predicted == labels.to(predicted.device)).double().mean())


def _digest(tensor: Tensor) -> str:
    """A hash of a tensor's dtype, shape and bytes."""
    array = tensor.detach().cpu().contiguous().numpy()
    digest = hashlib.sha256(f"{array.dtype} {array.shape}".encode())
    digest.update(np.ascontiguousarray(array).data)
    return digest.hexdigest()


def classifier_for(
    images: Tensor,
    labels: Tensor,
    *,
    key: dict,
    seed: int = 0,
    epochs: int = 30,
    batch_size: int = 64,
    augment: bool = False,
) -> DigitClassifier:
    """The :func:`train_classifier` model for these images and labels, from the user's cache if it is there.

    ``key`` names the data set (JSON, e.g. its name and split). The cache file,
    ``cache_dir()/classifiers/<hash>.safetensors``, is named by a hash of the key,
    the images' and labels' bytes, the training settings and scorelab's version,
    and it stores that description in its metadata: a file that does not load, was
    written for another description, or whose weights do not fit is retrained and
    rewritten. Weights load through safetensors only, never pickle. A cache
    directory that cannot be written is skipped. The model is on the images' device.
    """
    _check_images(images, labels)
    description = json.dumps({"key": key, "images": _digest(images), "labels": _digest(labels), "seed": seed,
                              "epochs": epochs, "batch_size": batch_size, "augment": augment,
                              "learning_rate": LEARNING_RATE, "features": FEATURES, "version": __version__}, sort_keys=True)
    path = cache_dir() / "classifiers" / (hashlib.sha256(description.encode()).hexdigest()[:24] + ".safetensors")
    try:
        with safe_open(path, framework="pt") as file:
            metadata = file.metadata() or {}
        if metadata.get("description") == description:
            model = DigitClassifier(int(metadata["channels"]), int(metadata["n_classes"])).to(images.device)
            model.load_state_dict(load_file(path, device=str(images.device)))
            return model.eval()
    except (OSError, SafetensorError, ValueError, KeyError, RuntimeError):
        pass  # missing or unusable: train below
    model = train_classifier(images, labels, seed=seed, epochs=epochs, batch_size=batch_size, augment=augment)
    metadata = {"description": description, "channels": str(model.channels), "n_classes": str(model.n_classes)}
    tensors = {name: value.detach().cpu().contiguous() for name, value in model.state_dict().items()}
    try:
        write_atomic(path, save(tensors, metadata=metadata))
    except (OSError, ScorelabError):
        pass  # the cache only saves time
    return model
