"""Batches: decoded images on the device, or files streamed by a DataLoader.

Small images (CIFAR, MNIST, the synthetic set, small ImageFolder trees) sit on
the training device as uint8 ``(N, C, H, W)``; a random crop (zero padding)
and a horizontal flip are applied per sample with one batched gather, then
normalised, all without leaving the device. A ``transforms.v2`` call on a
whole batch would not do: it draws one crop and one flip for the batch.

Large images stream through a ``torch.utils.data.DataLoader`` with workers
and torchvision transforms (RandomResizedCrop + flip; resize + centre crop to
evaluate).

Reproducibility: an epoch's order and augmentation come from a CPU
``torch.Generator`` seeded with ``(seed, epoch)``, so the same seed gives the
same batches with the same crops on any device, and a stream can start at any
step without replaying the ones before it. A stream only yields tensors, so
one stream can feed two networks (LAW's target and reference).
"""
from __future__ import annotations

import zlib
from typing import Iterator, NamedTuple, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from torchvision.io import ImageReadMode, decode_image, read_file
from torchvision.transforms import v2

from law.errors import DataError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def derive_seed(seed: int, *keys: int | str) -> int:
    """A well-mixed 63-bit seed for one purpose, e.g. ``derive_seed(seed, "train", epoch)``.

    Mixing (rather than ``seed + epoch``) keeps streams of nearby seeds unrelated.
    """
    words = [k if isinstance(k, int) else zlib.crc32(k.encode()) for k in (seed, *keys)]
    state = np.random.SeedSequence([w % 2**64 for w in words]).generate_state(1, np.uint64)
    return int(state[0] >> np.uint64(1))


def seeded_generator(seed: int, *keys: int | str) -> torch.Generator:
    return torch.Generator().manual_seed(derive_seed(seed, *keys))


class Batch(NamedTuple):
    inputs: torch.Tensor
    """(B, C, H, W) float, normalised, augmented, on the device."""
    targets: torch.Tensor
    """(B,) long observed labels, on the device."""
    indices: torch.Tensor
    """(B,) long positions in the split the batch was drawn from."""


def crop_and_flip(images: torch.Tensor, offsets: torch.Tensor, flips: torch.Tensor,
                  padding: int) -> torch.Tensor:
    """Per-sample random crop with zero padding, then horizontal mirror.

    ``offsets`` (B, 2) holds each sample's (row, column) window start in the
    padded image, in ``[0, 2 * padding]``; ``flips`` (B,) bool. Same result as
    torchvision's ``RandomCrop(size, padding)`` then ``RandomHorizontalFlip``
    with those parameters (zero = black padding of the raw image).

    How: ``unfold`` views every possible window of the padded batch without
    copying, and one advanced-indexing copy picks each sample's window. A
    mirrored crop at column ``dx`` is the crop at ``2 * padding - dx`` of the
    mirrored image, so the mirrored batch is stacked beside the original and
    the same single copy does the flip (about 2x faster on CPU than gathering
    with computed per-pixel indices).
    """
    b, c, h, w = images.shape
    padded = F.pad(images, (padding, padding, padding, padding)) if padding else images
    both = torch.stack([padded, padded.flip(-1)], dim=1)  # (B, 2, C, H + 2p, W + 2p)
    windows = both.unfold(3, h, 1).unfold(4, w, 1)  # (B, 2, C, 2p + 1, 2p + 1, H, W), a view
    columns = torch.where(flips, 2 * padding - offsets[:, 1], offsets[:, 1])
    sample = torch.arange(b, device=images.device)
    return windows[sample, flips.long(), :, offsets[:, 0], columns]


class TensorImages:
    """Decoded uint8 images on the device, with batched augmentation."""

    def __init__(self, images: torch.Tensor, mean: Sequence[float], std: Sequence[float],
                 crop_padding: int, flip: bool):
        self.images = images
        self.crop_padding = crop_padding
        self.flip = flip
        self.mean, self.std = tuple(mean), tuple(std)
        std_t = torch.tensor(std, device=images.device)
        # x / 255 then (x - mean) / std, folded into one multiply-add.
        self._scale = (1.0 / (255.0 * std_t)).view(1, -1, 1, 1)
        self._shift = (-torch.tensor(mean, device=images.device) / std_t).view(1, -1, 1, 1)

    def __len__(self) -> int:
        return len(self.images)

    @property
    def image_size(self) -> int:
        return self.images.shape[-1]

    @property
    def in_channels(self) -> int:
        return self.images.shape[1]

    def subset(self, indices: torch.Tensor) -> "TensorImages":
        return TensorImages(self.images[indices.to(self.images.device)], self.mean, self.std,
                            self.crop_padding, self.flip)

    def normalise(self, pixels: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self._shift, pixels.float(), self._scale)

    def augmented_batches(self, order: torch.Tensor, generator: torch.Generator, batch_size: int,
                          augment: bool, first: int = 0) -> Iterator[torch.Tensor]:
        """Inputs for ``order[k*B:(k+1)*B]``, k = first, first+1, ... (order on the device)."""
        n, device = len(order), self.images.device
        # Drawn for the whole epoch, in one transfer, so that starting at batch `first` sees
        # the same augmentation as an uninterrupted epoch and no step waits on the host.
        offsets = torch.randint(0, 2 * self.crop_padding + 1, (n, 2), generator=generator)
        flips = torch.rand(n, generator=generator) < (0.5 if self.flip else 0.0)
        offsets, flips = offsets.to(device), flips.to(device)
        for start in range(first * batch_size, n - batch_size + 1, batch_size):
            window = slice(start, start + batch_size)
            pixels = self.images[order[window]]
            if augment:
                pixels = crop_and_flip(pixels, offsets[window], flips[window], self.crop_padding)
            yield self.normalise(pixels)

    def eval_batches(self, batch_size: int) -> Iterator[torch.Tensor]:
        for start in range(0, len(self), batch_size):
            yield self.normalise(self.images[start:start + batch_size])


class _ImageFiles(Dataset):
    """Decodes one file per item. With ``seed`` set, the random transform of
    item ``i`` depends only on ``(seed, i)``: batches are identical whatever
    the number of workers, and the caller's global RNG is left alone."""

    def __init__(self, files: list[str], transform, seed: Optional[int] = None):
        self.files, self.transform, self.seed = files, transform, seed

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> torch.Tensor:
        image = decode_image(read_file(self.files[index]), mode=ImageReadMode.RGB)
        if self.seed is None:
            return self.transform(image)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(self.seed, index))
            return self.transform(image)


class FileImages:
    """Image files decoded by DataLoader workers while training (large images)."""

    def __init__(self, files: list[str], image_size: int, workers: int, device: torch.device,
                 flip: bool = True, mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD):
        self.files, self.image_size, self.workers, self.device = files, image_size, workers, device
        self.flip, self.mean, self.std = flip, tuple(mean), tuple(std)
        to_float = [v2.ToDtype(torch.float32, scale=True), v2.Normalize(self.mean, self.std)]
        self.train_transform = v2.Compose(
            [v2.RandomResizedCrop(image_size, antialias=True)]
            + ([v2.RandomHorizontalFlip()] if flip else []) + to_float)
        self.eval_transform = v2.Compose(
            [v2.Resize(round(image_size / 0.875), antialias=True), v2.CenterCrop(image_size)] + to_float)

    def __len__(self) -> int:
        return len(self.files)

    @property
    def in_channels(self) -> int:
        return 3

    def subset(self, indices: torch.Tensor) -> "FileImages":
        return FileImages([self.files[i] for i in indices.tolist()], self.image_size, self.workers,
                          self.device, self.flip, self.mean, self.std)

    def _loader(self, dataset: Dataset, batches) -> Iterator[torch.Tensor]:
        pin = self.device.type == "cuda"
        loader = DataLoader(dataset, batch_sampler=batches, num_workers=self.workers, pin_memory=pin)
        for inputs in loader:
            yield inputs.to(self.device, non_blocking=pin)

    def augmented_batches(self, order: torch.Tensor, generator: torch.Generator, batch_size: int,
                          augment: bool, first: int = 0) -> Iterator[torch.Tensor]:
        epoch_seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        usable = (len(order) // batch_size) * batch_size
        batches = order[first * batch_size:usable].cpu().view(-1, batch_size).tolist()
        transform = self.train_transform if augment else self.eval_transform
        return self._loader(_ImageFiles(self.files, transform, epoch_seed), batches)

    def eval_batches(self, batch_size: int) -> Iterator[torch.Tensor]:
        batches = torch.arange(len(self)).split(batch_size)
        return self._loader(_ImageFiles(self.files, self.eval_transform), [b.tolist() for b in batches])


ImageStore = TensorImages | FileImages


class BatchStream:
    """Endless stream of augmented training batches, ``drop_last`` style.

    Epoch ``e`` visits the samples in ``randperm`` order from a generator
    seeded with ``(seed, e)``; the last incomplete batch of an epoch is
    dropped, so every batch has exactly ``batch_size`` samples.
    """

    def __init__(self, store: ImageStore, labels: torch.Tensor, batch_size: int, seed: int,
                 augment: bool = True, start_step: int = 0, purpose: str = "train"):
        if len(store) < batch_size:
            raise DataError(f"a {purpose} batch needs {batch_size} samples but the split has only "
                            f"{len(store)}; lower --batch-size or use more data")
        self.store, self.labels = store, labels
        self.batch_size, self.seed, self.augment, self.purpose = batch_size, seed, augment, purpose
        self.steps_per_epoch = len(store) // batch_size
        self.step = start_step
        self._batches: Optional[Iterator[Batch]] = None

    @property
    def epoch(self) -> float:
        """Fractional epochs consumed so far."""
        return self.step / self.steps_per_epoch

    def __iter__(self) -> "BatchStream":
        return self

    def __next__(self) -> Batch:
        while True:
            if self._batches is None:
                epoch, first = divmod(self.step, self.steps_per_epoch)
                self._batches = self._epoch(epoch, first)
            batch = next(self._batches, None)
            if batch is not None:
                self.step += 1
                return batch
            self._batches = None

    def _epoch(self, epoch: int, first: int) -> Iterator[Batch]:
        generator = seeded_generator(self.seed, self.purpose, epoch)
        order = torch.randperm(len(self.store), generator=generator).to(self.labels.device)
        inputs = self.store.augmented_batches(order, generator, self.batch_size, self.augment, first)
        for k, x in enumerate(inputs, start=first):
            indices = order[k * self.batch_size:(k + 1) * self.batch_size]
            yield Batch(x, self.labels[indices], indices)
