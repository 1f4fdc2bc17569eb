"""Where the pixels come from: the embedded synthetic set, CIFAR-10/100, MNIST
and ImageFolder trees.

Every source returns the same thing (``RawDataset``: a training pool and a
test split), so splitting, label noise and loading never ask which data set
they are looking at. Small images come back decoded, as uint8 ``(N, C, H, W)``
tensors; a tree of large images comes back as a list of files that a
``DataLoader`` decodes while training.
"""
from __future__ import annotations

import hashlib
import os
import pickle
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
import torchvision
from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset
from torchvision.io import ImageReadMode, decode_image, read_file

from law.errors import DataError
from law.io import atomic_save

MAX_IN_MEMORY_SIDE = 64
"""Images up to this side are decoded once and kept on the device."""


@dataclass
class RawSplit:
    """Labels plus either decoded pixels or the files to decode them from."""

    labels: torch.Tensor
    """(N,) long class indices, on the CPU."""
    images: Optional[torch.Tensor] = None
    """(N, C, H, W) uint8 pixels (in-memory sets)."""
    files: Optional[list[str]] = None
    """Image paths: the files a streamed set decodes, and where a decoded ImageFolder tree came from."""

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices: torch.Tensor) -> "RawSplit":
        images = self.images[indices] if self.images is not None else None
        files = [self.files[i] for i in indices.tolist()] if self.files is not None else None
        return RawSplit(self.labels[indices], images, files)


@dataclass
class RawDataset:
    name: str
    train: RawSplit
    """The training pool; the clean validation split is drawn from it."""
    test: RawSplit
    class_names: list[str]
    flip: bool
    """Whether a horizontal mirror keeps the label (not for digits)."""

    @property
    def in_memory(self) -> bool:
        return self.train.images is not None


def cache_dir() -> Path:
    """Decoded-image cache: ``$LAW_CACHE_DIR``, else ``~/.cache/law``."""
    return Path(os.environ.get("LAW_CACHE_DIR") or Path.home() / ".cache" / "law")


# ----------------------------------------------------------------------------------------
# Embedded synthetic set


def make_synthetic(train_size: int, test_size: int, num_classes: int, image_size: int,
                   difficulty: float, seed: int) -> RawDataset:
    """A deterministic, offline, image-shaped classification set.

    Each class owns two smooth random colour patterns (low-resolution noise,
    upsampled), painted on a canvas larger than the image. A sample is a
    randomly shifted window of one of its class's patterns, with random
    contrast and brightness, blended with a pattern of another class and
    covered in pixel noise. Convolutions help (patterns are local and shifted),
    yet the classes overlap enough that a small CNN stays far from 100 %, so
    label noise has visible room to hurt. ``difficulty`` scales the blend and
    the pixel noise (0 = nearly separable).
    """
    g = torch.Generator().manual_seed(seed)
    modes, channels, margin = 2, 3, max(image_size // 4, 1)
    canvas = image_size + 2 * margin
    coarse = torch.randn(num_classes * modes, channels, 5, 5, generator=g)
    patterns = F.interpolate(coarse, size=(canvas, canvas), mode="bicubic", align_corners=False)
    patterns = patterns / patterns.flatten(1).std(dim=1).view(-1, 1, 1, 1)

    def sample(n: int) -> RawSplit:
        labels = torch.arange(n) % num_classes
        labels = labels[torch.randperm(n, generator=g)]
        own = labels * modes + torch.randint(0, modes, (n,), generator=g)
        other_class = (labels + torch.randint(1, num_classes, (n,), generator=g)) % num_classes
        other = other_class * modes + torch.randint(0, modes, (n,), generator=g)
        blend = difficulty * 1.2 * torch.rand(n, generator=g)
        mixed = window(own) + blend.view(-1, 1, 1, 1) * window(other)
        contrast = 0.5 + torch.rand(n, 1, 1, 1, generator=g)
        brightness = 0.5 * torch.randn(n, 1, 1, 1, generator=g)
        pixel_noise = difficulty * 1.5 * torch.randn(n, channels, image_size, image_size, generator=g)
        x = contrast * mixed + brightness + pixel_noise
        images = ((torch.tanh(0.5 * x) + 1) * 127.5).round().to(torch.uint8)
        return RawSplit(labels, images=images)

    def window(pattern_ids: torch.Tensor) -> torch.Tensor:
        # One randomly placed window per sample, cut by batched indexing.
        n = len(pattern_ids)
        dy, dx = torch.randint(0, 2 * margin + 1, (2, n, 1, 1, 1), generator=g)
        rows = dy + torch.arange(image_size).view(1, 1, -1, 1)
        cols = dx + torch.arange(image_size).view(1, 1, 1, -1)
        chan = torch.arange(channels).view(1, -1, 1, 1)
        return patterns[pattern_ids.view(-1, 1, 1, 1), chan, rows, cols]

    train, test = sample(train_size), sample(test_size)
    names = [f"pattern{c}" for c in range(num_classes)]
    return RawDataset("synthetic", train, test, names, flip=True)


# ----------------------------------------------------------------------------------------
# torchvision's on-disk formats: CIFAR python batches, MNIST raw idx files


class _CIFAR10Files(torchvision.datasets.CIFAR10):
    """torchvision's CIFAR-10 reader, checking that the batch files exist
    rather than their md5: re-packed or cut-down batches (and the tests' tiny
    ones) load too. A download is still verified against the archive's md5."""

    train_list = [[name, None] for name, _ in torchvision.datasets.CIFAR10.train_list]
    test_list = [[name, None] for name, _ in torchvision.datasets.CIFAR10.test_list]
    meta = {**torchvision.datasets.CIFAR10.meta, "md5": None}


class _CIFAR100Files(torchvision.datasets.CIFAR100):
    """torchvision's CIFAR-100 reader, checking file presence rather than md5."""

    train_list = [[name, None] for name, _ in torchvision.datasets.CIFAR100.train_list]
    test_list = [[name, None] for name, _ in torchvision.datasets.CIFAR100.test_list]
    meta = {**torchvision.datasets.CIFAR100.meta, "md5": None}


def _download_failed(name: str, root: Path, error: Exception) -> DataError:
    return DataError(f"{name}: download into {root} failed ({error}). Without internet, copy the "
                     f"files there yourself and drop --download.")


def load_cifar(name: str, root: str, download: bool) -> RawDataset:
    """CIFAR-10 or CIFAR-100 from torchvision's python batches under ``root``."""
    reader = _CIFAR10Files if name == "cifar10" else _CIFAR100Files
    base = reader.base_folder
    path = Path(root).expanduser()
    if path.name == base:
        path = path.parent
    expected = [n for n, _ in reader.train_list + reader.test_list] + [reader.meta["filename"]]
    if not download and not all((path / base / f).is_file() for f in expected):
        raise DataError(
            f"{name}: no CIFAR python batches in {path / base} (looked for {', '.join(expected)}). "
            f"Set --data-root to the folder that holds {base}/, or add --download to fetch it "
            f"there (needs internet).")
    try:
        if download:
            path.mkdir(parents=True, exist_ok=True)
            reader(str(path), train=True, download=True)
        train, test = reader(str(path), train=True), reader(str(path), train=False)
    except (OSError, RuntimeError) as error:
        if download:
            raise _download_failed(name, path, error) from error
        raise DataError(f"{name}: cannot read the batches in {path / base}: {error}") from error
    except (KeyError, ValueError, EOFError, pickle.UnpicklingError) as error:
        raise DataError(f"{name}: {path / base} holds malformed CIFAR batches ({error!r})") from error

    def split(ds: torchvision.datasets.CIFAR10) -> RawSplit:
        images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()
        return RawSplit(torch.tensor(ds.targets, dtype=torch.long), images=images)

    return RawDataset(name, split(train), split(test), list(train.classes), flip=True)


def load_mnist(root: str, download: bool) -> RawDataset:
    """MNIST from torchvision's raw idx files in ``root/MNIST/raw``."""
    path = Path(root).expanduser()
    if path.name == "raw" and path.parent.name == "MNIST":
        path = path.parent.parent
    elif path.name == "MNIST":
        path = path.parent
    raw = path / "MNIST" / "raw"
    expected = [os.path.splitext(os.path.basename(url))[0]
                for url, _ in torchvision.datasets.MNIST.resources]
    if not download and not all((raw / f).is_file() for f in expected):
        raise DataError(
            f"mnist: no raw MNIST files in {raw} (looked for {', '.join(expected)}). Set "
            f"--data-root to the folder that holds MNIST/raw/, or add --download to fetch it "
            f"there (needs internet).")
    try:
        if download:
            path.mkdir(parents=True, exist_ok=True)
        train = torchvision.datasets.MNIST(str(path), train=True, download=download)
        test = torchvision.datasets.MNIST(str(path), train=False)
    except (OSError, RuntimeError) as error:
        if download:
            raise _download_failed("mnist", path, error) from error
        raise DataError(f"mnist: cannot read the idx files in {raw}: {error}") from error
    except (AssertionError, ValueError) as error:
        raise DataError(f"mnist: {raw} holds malformed idx files ({error!r})") from error

    def split(ds: torchvision.datasets.MNIST) -> RawSplit:
        return RawSplit(ds.targets.long(), images=ds.data.unsqueeze(1).contiguous())

    # Digits are not mirror-symmetric: a flipped 2 is not a 2.
    return RawDataset("mnist", split(train), split(test), list(train.classes), flip=False)


# ----------------------------------------------------------------------------------------
# ImageFolder trees (ImageNet layout): root/train/<class>/*, root/test/<class>/* (or val/)


def load_image_folder(root: str, in_memory: str, decode_workers: int = 4) -> RawDataset:
    """An ImageFolder tree; small images are decoded once (and cached), large ones streamed.

    ``in_memory``: ``auto`` decodes into memory when the first training image
    is at most ``MAX_IN_MEMORY_SIDE`` pixels on its longer side; ``always`` or
    ``never`` force the choice.
    """
    path = Path(root).expanduser()
    train_dir = path / "train"
    test_dir = next((path / d for d in ("test", "val") if (path / d).is_dir()), None)
    if not train_dir.is_dir() or test_dir is None:
        found = sorted(p.name for p in path.iterdir()) if path.is_dir() else None
        raise DataError(
            f"imagefolder: {path} needs a train/ and a test/ (or val/) folder, each with one "
            f"sub-folder per class (ImageNet layout); "
            + (f"found {found[:10]}. " if found is not None else "that folder does not exist. ")
            + "Point --data-root at the folder that holds train/.")
    try:
        classes, class_to_idx = find_classes(str(train_dir))
        test_classes, _ = find_classes(str(test_dir))
    except FileNotFoundError as error:
        raise DataError(f"imagefolder: {error}") from error
    if test_classes != classes:
        only_train = sorted(set(classes) - set(test_classes))
        only_test = sorted(set(test_classes) - set(classes))
        raise DataError(f"imagefolder: {train_dir} and {test_dir} must hold the same class folders; "
                        + "; ".join(part for part in (
                            f"only in train/: {', '.join(only_train)}" if only_train else "",
                            f"only in {test_dir.name}/: {', '.join(only_test)}" if only_test else "") if part))
    try:
        train = make_dataset(str(train_dir), class_to_idx, extensions=IMG_EXTENSIONS)
        test = make_dataset(str(test_dir), class_to_idx, extensions=IMG_EXTENSIONS, allow_empty=True)
    except FileNotFoundError as error:
        raise DataError(f"imagefolder: {error}") from error
    if not test:
        raise DataError(f"imagefolder: no images in {test_dir}/<class>/ for classes found in train/")

    if in_memory == "auto":
        first = decode_image(read_file(train[0][0]), mode=ImageReadMode.RGB)
        in_memory = "always" if max(first.shape[-2:]) <= MAX_IN_MEMORY_SIDE else "never"
    make = (lambda s: decode_tree(s, decode_workers)) if in_memory == "always" else _file_split
    return RawDataset("imagefolder", make(train), make(test), classes, flip=True)


def _file_split(samples: Sequence[tuple[str, int]]) -> RawSplit:
    files, labels = zip(*samples)
    return RawSplit(torch.tensor(labels, dtype=torch.long), files=list(files))


def decode_tree(samples: Sequence[tuple[str, int]], workers: int = 4) -> RawSplit:
    """Decode every image once into a uint8 tensor, caching the result.

    The cache file lives in ``cache_dir()`` (never beside the user's data),
    is named after a hash of the file paths and labels, and is written
    atomically, so a crash cannot leave a truncated cache behind.
    """
    files, labels = zip(*samples)
    digest = hashlib.sha256("\n".join(f"{os.path.abspath(f)}\t{y}" for f, y in samples).encode())
    cache = cache_dir() / f"imagefolder-{digest.hexdigest()[:24]}.pt"
    if cache.is_file():
        try:
            cached = torch.load(cache, weights_only=True)
            return RawSplit(cached["labels"], images=cached["images"], files=list(files))
        except Exception:  # a cache from an older format or a damaged disk: rebuild it
            pass
    with ThreadPoolExecutor(max(workers, 1)) as pool:
        # Reading files is I/O bound, and the decoders release the GIL.
        decoded = list(pool.map(_decode_rgb, files, chunksize=256))
    shapes = {tuple(x.shape) for x in decoded}
    if len(shapes) > 1:
        raise DataError(f"imagefolder: images under {os.path.dirname(os.path.dirname(files[0]))} "
                        f"differ in size ({sorted(shapes)[:3]}...); decoding into memory needs one "
                        f"size. Use --in-memory never to stream them with resizing transforms.")
    split = RawSplit(torch.tensor(labels, dtype=torch.long), images=torch.stack(decoded), files=list(files))
    atomic_save({"labels": split.labels, "images": split.images}, cache)
    return split


def _decode_rgb(file: str) -> torch.Tensor:
    try:
        return decode_image(read_file(file), mode=ImageReadMode.RGB)
    except RuntimeError as error:
        raise DataError(f"imagefolder: cannot decode {file}: {error}") from error
