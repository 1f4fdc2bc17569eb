"""Data: sources, biased training splits, and device-resident batch streams.

``load_data(cfg, seed, device)`` returns a ``DataBundle``: a noisy and/or
imbalanced training split, a clean validation split and a test split, plus
reproducible batch streams. How the splits are made, in this order:

1. **Validation** is drawn first from the training pool, class-stratified
   (``val_size`` samples, in proportion to the pool's classes), before any
   imbalance or noise: its labels are always clean. It is ordered so that
   every prefix is stratified too (its first ``meta_size`` samples are the
   L2RW meta set).
2. **Imbalance** (``longtail`` or ``step``) is imposed on the rest of the pool.
3. **Train subset**: ``train_size`` samples drawn class-stratified from what
   imbalance kept, so the subset keeps the imbalance profile and
   ``train_size`` is exactly the number of training samples.
4. **Label noise** corrupts the training labels; ``clean_labels`` and
   ``noise_mask`` keep the truth for analysis (never for training).

The test split is the source's test set, optionally a stratified subset of
``test_size``. All draws come from generators derived from ``seed``.

Submodules: ``law.datasets`` (sources), ``law.noise`` (noise, imbalance,
stratified draws), ``law.loaders`` (augmentation, batch streams).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Iterator, Optional

import torch
import tyro

from law.datasets import (RawDataset, RawSplit, cache_dir, load_cifar, load_image_folder, load_mnist,
                          make_synthetic)
from law.errors import ConfigError, DataError
from law.human_labels import LABEL_SETS, human_labels
from law.io import check_writable_dir
from law.loaders import (Batch, BatchStream, FileImages, ImageStore, TensorImages, crop_and_flip,
                         derive_seed, seeded_generator)
from law.noise import (IMBALANCE_KINDS, NOISE_KINDS, corrupt_labels, imbalance_counts,
                       proportional_counts, take_per_class)

__all__ = [
    "DataConfig", "DataBundle", "LabeledSplit", "Batch", "BatchStream", "load_data", "DATASETS",
    "crop_and_flip", "corrupt_labels", "imbalance_counts", "cache_dir", "derive_seed",
]

DATASETS = ("synthetic", "cifar10", "cifar100", "mnist", "imagefolder")
SPLITS = ("train", "val", "test")


@dataclass
class DataConfig:
    """Which data set, how its training split is biased, and how it is batched."""

    dataset: str = "synthetic"
    """Data set: synthetic (embedded, offline), cifar10, cifar100, mnist, imagefolder."""
    data_root: Annotated[str, tyro.conf.arg(aliases=("--data-path",))] = ""
    """Folder with the data: holds cifar-10-batches-py/, cifar-100-python/, MNIST/raw/, or (imagefolder) train/ and test/ or val/."""
    download: bool = False
    """Let torchvision download CIFAR/MNIST into --data-root when the files are missing (needs internet)."""
    noise: str = "none"
    """Label noise on the training split: none, symmetric (uniform over all classes, may keep the true one), pair (c -> c+1 mod C), cifar10n (real human labels, CIFAR-10 only)."""
    noise_rate: float = 0.4
    """Probability that a training label is resampled (symmetric) or flipped (pair)."""
    noise_label: str = "worse"
    """cifar10n: which human label set: worse (40 % wrong), aggre (9 %), random1, random2, random3 (17-18 %)."""
    noise_file: str = ""
    """cifar10n: path to the published label file CIFAR-10_human.pt."""
    imbalance: str = "none"
    """Class imbalance of the training split: none, longtail (exponential, Cui et al.), step (minority classes 0..k-1)."""
    imbalance_ratio: float = 100.0
    """longtail: size of the largest class over the smallest."""
    step_minority_classes: int = 2
    """step: how many classes (0..k-1) are minority classes."""
    step_keep_fraction: float = 0.04
    """step: fraction of the largest class's size that each minority class keeps."""
    train_size: int = 0
    """Training samples, drawn class-stratified after imbalance (0 = all that remain)."""
    val_size: int = 1000
    """Clean validation samples, drawn class-stratified from the training pool first (0 = none)."""
    test_size: int = 0
    """Test samples, a class-stratified subset of the test set (0 = all)."""
    batch_size: int = 128
    """Training batch size (the last incomplete batch of an epoch is dropped)."""
    eval_batch_size: int = 1000
    """Batch size for evaluation passes."""
    augment: bool = True
    """Augment training batches: random crop + flip (in memory), RandomResizedCrop + flip (streamed)."""
    crop_padding: int = 4
    """Zero padding of the random crop for in-memory images (0 = no crop)."""
    flip: str = "auto"
    """Random horizontal flips: auto (on, except for MNIST digits), on, off."""
    image_size: int = 0
    """Streamed imagefolder: crop size (0 = 224); in-memory sets keep their native size."""
    in_memory: str = "auto"
    """imagefolder: auto (decode into memory when images are at most 64 px), always, never (stream files)."""
    loader_workers: int = 2
    """DataLoader workers for streamed images (and threads for the one-off decoding of small ones)."""
    synthetic_train_size: int = 5000
    """Synthetic training pool (the validation split is drawn from it)."""
    synthetic_test_size: int = 2000
    """Synthetic test set size."""
    synthetic_classes: int = 10
    """Synthetic number of classes."""
    synthetic_image_size: int = 16
    """Synthetic image side in pixels (3 channels)."""
    synthetic_difficulty: float = 1.0
    """Synthetic class overlap and pixel noise (0 = nearly separable; 1 = a small CNN gets ~70 %)."""
    synthetic_seed: int = 0
    """Seed of the synthetic images themselves (splits and noise follow the run seed)."""

    def validate(self) -> None:
        def need(ok: bool, name: str, message: str) -> None:
            if not ok:
                raise ConfigError(name, message)

        need(self.dataset in DATASETS, "dataset",
             f"unknown data set {self.dataset!r}; known: {', '.join(DATASETS)}")
        need(self.dataset == "synthetic" or bool(self.data_root), "data_root",
             f"{self.dataset} needs --data-root DIR (add --download to fetch CIFAR/MNIST there)"
             if self.dataset != "imagefolder" else
             "imagefolder needs --data-root DIR, the folder that holds train/ and test/ (or val/)")
        need(not (self.download and self.dataset in ("synthetic", "imagefolder")), "download",
             f"{self.dataset} cannot be downloaded; drop --download")
        need(self.noise in NOISE_KINDS, "noise", f"unknown noise {self.noise!r}; known: {', '.join(NOISE_KINDS)}")
        need(0.0 <= self.noise_rate <= 1.0, "noise_rate", f"must be in [0, 1], got {self.noise_rate}")
        if self.noise == "cifar10n":
            need(self.noise_label in LABEL_SETS, "noise_label",
                 f"unknown CIFAR-10N label set {self.noise_label!r}; known: {', '.join(LABEL_SETS)}")
            need(bool(self.noise_file), "noise_file", "cifar10n needs --noise-file PATH/CIFAR-10_human.pt")
            need(self.dataset in ("cifar10", "imagefolder"), "noise",
                 f"cifar10n labels CIFAR-10 (--dataset cifar10, or an imagefolder tree of it), not {self.dataset}")
        need(self.imbalance in IMBALANCE_KINDS, "imbalance",
             f"unknown imbalance {self.imbalance!r}; known: {', '.join(IMBALANCE_KINDS)}")
        need(self.imbalance_ratio >= 1.0, "imbalance_ratio",
             f"largest/smallest class must be >= 1, got {self.imbalance_ratio}")
        need(self.step_minority_classes >= 1, "step_minority_classes",
             f"must be >= 1, got {self.step_minority_classes}")
        need(0.0 < self.step_keep_fraction <= 1.0, "step_keep_fraction",
             f"must be in (0, 1], got {self.step_keep_fraction}")
        for name in ("train_size", "val_size", "test_size", "crop_padding", "image_size", "loader_workers"):
            need(getattr(self, name) >= 0, name, f"must be >= 0, got {getattr(self, name)}")
        for name in ("batch_size", "eval_batch_size"):
            need(getattr(self, name) >= 1, name, f"must be >= 1, got {getattr(self, name)}")
        need(self.flip in ("auto", "on", "off"), "flip", f"must be auto, on or off, got {self.flip!r}")
        need(self.in_memory in ("auto", "always", "never"), "in_memory",
             f"must be auto, always or never, got {self.in_memory!r}")
        need(self.synthetic_classes >= 2, "synthetic_classes", f"must be >= 2, got {self.synthetic_classes}")
        need(self.synthetic_image_size >= 4, "synthetic_image_size",
             f"must be >= 4, got {self.synthetic_image_size}")
        need(self.synthetic_train_size >= self.synthetic_classes, "synthetic_train_size",
             f"needs at least one image per class ({self.synthetic_classes}), got {self.synthetic_train_size}")
        need(self.synthetic_test_size >= 1, "synthetic_test_size", f"must be >= 1, got {self.synthetic_test_size}")
        need(self.synthetic_difficulty >= 0.0, "synthetic_difficulty",
             f"must be >= 0, got {self.synthetic_difficulty}")
        if self.dataset == "imagefolder":  # small images are decoded once into this cache
            check_writable_dir(cache_dir(), "LAW_CACHE_DIR")


@dataclass
class LabeledSplit:
    """One split: observed labels, the clean truth, and where its pixels are."""

    labels: torch.Tensor
    """(N,) long observed labels (noisy for train), on the device."""
    clean_labels: torch.Tensor
    """(N,) long labels before noise, on the device."""
    store: ImageStore
    """The pixels: ``TensorImages`` (decoded, on the device) or ``FileImages`` (streamed)."""
    source_indices: torch.Tensor
    """(N,) long positions of the samples in the source's own split (torchvision's order; an ImageFolder
    tree's sorted files), on the CPU: how a sample is found again outside LAW."""
    files: Optional[list[str]] = None
    """Image files of the samples (ImageFolder trees), else None."""
    noise_mask: torch.Tensor = field(init=False)
    """(N,) bool, ``labels != clean_labels``."""

    def __post_init__(self) -> None:
        self.noise_mask = self.labels != self.clean_labels

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class DataBundle:
    """The three splits of one data set and the streams that batch them."""

    train: LabeledSplit
    val: LabeledSplit
    test: LabeledSplit
    num_classes: int
    class_names: list[str]
    in_channels: int
    image_size: int
    name: str
    batch_size: int
    eval_batch_size: int
    augment: bool
    device: torch.device
    bias: str = "none"
    """The label noise and imbalance applied to the training split, as asked for (for logs)."""
    labels_known_clean: bool = False
    """Whether ``train.clean_labels`` is a known truth: label noise was applied (injected or CIFAR-10N), so
    the noise mask says which labels are wrong. Without it LAW knows only the labels it was given."""
    class_counts: torch.Tensor = field(init=False)
    """(num_classes,) long counts of the OBSERVED training labels (what a method may know)."""

    def __post_init__(self) -> None:
        self.class_counts = torch.bincount(self.train.labels, minlength=self.num_classes)

    def split(self, name: str) -> LabeledSplit:
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; known: {', '.join(SPLITS)}")
        return getattr(self, name)

    def train_stream(self, seed: int, start_step: int = 0) -> BatchStream:
        """Endless augmented training batches; the same seed gives the same batches.

        ``start_step`` resumes the stream where a run stopped (no replay needed).
        """
        return BatchStream(self.train.store, self.train.labels, self.batch_size, seed,
                           augment=self.augment, start_step=start_step, purpose="train")

    def eval_batches(self, split: str, clean: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Unaugmented ``(inputs, labels)`` over a whole split, in order.

        Labels are the observed ones (noisy for train) unless ``clean``.
        """
        part = self.split(split)
        labels = part.clean_labels if clean else part.labels
        start = 0
        for inputs in part.store.eval_batches(self.eval_batch_size):
            yield inputs, labels[start:start + len(inputs)]
            start += len(inputs)

    def meta_stream(self, seed: int, meta_size: int, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Endless clean ``(inputs, labels)`` batches from the first ``meta_size``
        validation samples (L2RW's meta set), augmented like training batches."""
        if not 0 < meta_size <= len(self.val):
            raise DataError(f"the meta set needs 0 < meta_size <= the validation size ({len(self.val)}), "
                            f"got {meta_size}; raise --val-size or lower the meta set size")
        if batch_size > meta_size:
            raise DataError(f"meta batch size {batch_size} exceeds the meta set ({meta_size} samples); "
                            f"lower the meta batch size or enlarge the meta set")
        first = torch.arange(meta_size)
        stream = BatchStream(self.val.store.subset(first), self.val.labels[:meta_size], batch_size,
                             seed, augment=self.augment, purpose="meta")
        return ((batch.inputs, batch.targets) for batch in stream)

    def summary(self) -> dict:
        """Sizes, the bias applied and what it did, for logs and results files."""
        return {
            "name": self.name, "num_classes": self.num_classes,
            "train": len(self.train), "val": len(self.val), "test": len(self.test),
            "bias": self.bias,
            "noisy_fraction": float(self.train.noise_mask.float().mean()) if len(self.train) else 0.0,
            "class_counts": self.class_counts.tolist(),
        }

    def describe(self) -> str:
        """One line saying what a run trains on, printed by every command."""
        s = self.summary()
        counts = s["class_counts"]
        return (f"data: {s['name']}, train {s['train']} / clean val {s['val']} / test {s['test']}; "
                f"applied: {s['bias']} ({s['noisy_fraction']:.1%} of training labels differ from the truth; "
                f"class sizes {min(counts)}-{max(counts)})")


# ----------------------------------------------------------------------------------------


def load_data(cfg: DataConfig, seed: int, device: str | torch.device = "cpu") -> DataBundle:
    """Load, split, bias and place a data set on ``device`` (see the module docstring)."""
    cfg.validate()
    device = torch.device(device)
    raw = _load_source(cfg)
    num_classes = len(raw.class_names)
    if cfg.imbalance == "step" and cfg.step_minority_classes >= num_classes:
        raise ConfigError("step_minority_classes", f"must be below the number of classes ({num_classes}), "
                                                   f"got {cfg.step_minority_classes}")

    pool = raw.train.labels
    val_idx, train_idx = _draw_validation(pool, num_classes, cfg.val_size, seed)
    train_idx = _impose_imbalance(pool, train_idx, num_classes, cfg, seed)
    train_idx = _stratified_subset(pool, train_idx, num_classes, cfg.train_size, seed, "train")
    clean = pool[train_idx]
    if cfg.noise == "cifar10n":  # real human labels; the clean ones stay the truth (noise mask)
        noisy = human_labels(cfg.noise_file, cfg.noise_label, raw.name, pool, raw.class_names)[train_idx]
    else:
        noisy = corrupt_labels(clean, num_classes, cfg.noise, cfg.noise_rate, seeded_generator(seed, "noise"))
    test_idx = _stratified_subset(raw.test.labels, torch.arange(len(raw.test)), num_classes,
                                  cfg.test_size, seed, "test")

    flip = {"auto": raw.flip, "on": True, "off": False}[cfg.flip]
    store = _image_store_factory(raw, cfg, device, flip)

    def labeled(split: RawSplit, indices: torch.Tensor, labels: torch.Tensor | None = None) -> LabeledSplit:
        part = split.subset(indices)
        observed = part.labels if labels is None else labels
        return LabeledSplit(observed.to(device), part.labels.to(device), store(part), indices.clone(), part.files)

    train = labeled(raw.train, train_idx, noisy)
    val, test = labeled(raw.train, val_idx), labeled(raw.test, test_idx)
    image_size = (raw.train.images.shape[-1] if raw.in_memory else cfg.image_size or 224)
    return DataBundle(train, val, test, num_classes, list(raw.class_names), train.store.in_channels,
                      image_size, raw.name, cfg.batch_size, cfg.eval_batch_size, cfg.augment, device,
                      bias=describe_bias(cfg), labels_known_clean=cfg.noise != "none")


def describe_bias(cfg: DataConfig) -> str:
    """The label noise and imbalance ``cfg`` asks for, in words."""
    if cfg.noise == "cifar10n":
        noise = f"CIFAR-10N human labels '{cfg.noise_label}'"
    elif cfg.noise == "none" or cfg.noise_rate == 0:
        noise = "no label noise"
    else:
        noise = f"{cfg.noise} label noise at rate {cfg.noise_rate:g}"
    imbalance = {"none": "no imbalance",
                 "longtail": f"long-tail imbalance, ratio {cfg.imbalance_ratio:g}",
                 "step": f"step imbalance, {cfg.step_minority_classes} minority classes at "
                         f"{cfg.step_keep_fraction:g}"}[cfg.imbalance]
    return f"{noise}, {imbalance}"


def _load_source(cfg: DataConfig) -> RawDataset:
    if cfg.dataset == "synthetic":
        return make_synthetic(cfg.synthetic_train_size, cfg.synthetic_test_size, cfg.synthetic_classes,
                              cfg.synthetic_image_size, cfg.synthetic_difficulty, cfg.synthetic_seed)
    if cfg.dataset in ("cifar10", "cifar100"):
        return load_cifar(cfg.dataset, cfg.data_root, cfg.download)
    if cfg.dataset == "mnist":
        return load_mnist(cfg.data_root, cfg.download)
    return load_image_folder(cfg.data_root, cfg.in_memory, max(cfg.loader_workers, 4))


def _draw_validation(pool: torch.Tensor, num_classes: int, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    if size > len(pool) - num_classes:
        raise DataError(f"--val-size {size} leaves too little of the {len(pool)}-sample training pool "
                        f"for training; lower --val-size")
    counts = torch.bincount(pool, minlength=num_classes)
    val = take_per_class(pool, proportional_counts(counts, size), seeded_generator(seed, "val"),
                         interleave=True)
    in_val = torch.zeros(len(pool), dtype=torch.bool)
    in_val[val] = True
    return val, torch.nonzero(~in_val).flatten()


def _impose_imbalance(pool: torch.Tensor, indices: torch.Tensor, num_classes: int, cfg: DataConfig,
                      seed: int) -> torch.Tensor:
    if cfg.imbalance == "none":
        return indices
    labels = pool[indices]
    counts = imbalance_counts(torch.bincount(labels, minlength=num_classes), cfg.imbalance,
                              cfg.imbalance_ratio, cfg.step_minority_classes, cfg.step_keep_fraction)
    return indices[take_per_class(labels, counts, seeded_generator(seed, "imbalance"))]


def _stratified_subset(all_labels: torch.Tensor, indices: torch.Tensor, num_classes: int, size: int,
                       seed: int, purpose: str) -> torch.Tensor:
    if size == 0 or size == len(indices):
        return indices
    if size > len(indices):
        raise DataError(f"--{purpose}-size {size} exceeds the {len(indices)} {purpose} samples available"
                        + (" after the validation split and imbalance" if purpose == "train" else "")
                        + f"; lower --{purpose}-size or set it to 0 (all)")
    labels = all_labels[indices]
    counts = proportional_counts(torch.bincount(labels, minlength=num_classes), size)
    return indices[take_per_class(labels, counts, seeded_generator(seed, purpose))]


def _image_store_factory(raw: RawDataset, cfg: DataConfig, device: torch.device, flip: bool):
    """How a split's pixels are held: decoded on the device, or as files to stream."""
    if not raw.in_memory:
        size = cfg.image_size or 224
        return lambda part: FileImages(part.files, size, cfg.loader_workers, device, flip)
    mean, std = channel_stats(raw.train.images)
    return lambda part: TensorImages(part.images.to(device), mean, std, cfg.crop_padding, flip)


def channel_stats(images: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and std (of pixel / 255) of uint8 images, from 256-bin
    histograms: exact, and no float copy of the whole data set."""
    levels = torch.arange(256, dtype=torch.float64) / 255.0
    means, stds = [], []
    for channel in range(images.shape[1]):
        hist = torch.bincount(images[:, channel].flatten(), minlength=256).double()
        hist /= hist.sum()
        mean = float((hist * levels).sum())
        means.append(mean)
        stds.append(max(float((hist * (levels - mean) ** 2).sum()) ** 0.5, 1e-3))
    return means, stds
