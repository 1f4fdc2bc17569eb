"""Real human label noise: CIFAR-10N (Wei et al., ICLR 2022).

The published label file (``CIFAR-10_human.pt``) is a ``torch.save``d dict of
integer numpy arrays of length 50,000, in CIFAR-10's original training order:
``clean_label`` and five noisy label sets (one annotator each, their majority
vote, and "worse": a wrong label whenever any annotator gave one). Unlike
synthetic noise it is class-dependent and concentrated on hard images.

The file is read with ``torch.load(weights_only=True)`` and only numpy's
array reconstruction allowed: a file that holds anything else is refused,
never unpickled.

Matching it to the pool of training images:

* torchvision's CIFAR-10 files (``cifar-10-batches-py``) are in the original
  order, so label ``i`` is image ``i``;
* an ImageFolder tree of CIFAR-10 (``train/<class>/NNNN.jpg``, as in
  ``../shared/data``) numbers each class's images in the original order, so
  original image ``i`` is the ``k``-th file of class ``clean_label[i]``, where
  ``k`` counts the earlier images of that class.

Either way the file's clean labels must equal the pool's labels, which is
checked.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from numpy._core.multiarray import _reconstruct

from law.errors import DataError

LABEL_SETS = {"worse": "worse_label", "aggre": "aggre_label", "random1": "random_label1",
              "random2": "random_label2", "random3": "random_label3"}
"""--noise-label name -> key in the published file."""

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

# What numpy's pickling of an integer array refers to, and nothing more.
_NUMPY_ARRAYS = [(_reconstruct, "numpy.core.multiarray._reconstruct"),
                 (_reconstruct, "numpy._core.multiarray._reconstruct"), np.ndarray, np.dtype,
                 *(type(np.dtype(t)) for t in (np.int64, np.int32, np.int16, np.int8, np.uint8))]


def load_label_file(path: str | Path) -> dict[str, np.ndarray]:
    """The label arrays of a CIFAR-10N file, read without unrestricted unpickling."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"cifar10n: no label file at '{path}'; pass --noise-file PATH/CIFAR-10_human.pt "
                        "(published with CIFAR-10N, Wei et al. 2022)")
    try:
        with torch.serialization.safe_globals(_NUMPY_ARRAYS):
            data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise DataError(f"cifar10n: '{path}' is not a CIFAR-10N label file: it holds more than integer arrays, "
                        f"or is damaged ({reason[:200]})") from None
    missing = [key for key in ("clean_label", *LABEL_SETS.values()) if key not in data] \
        if isinstance(data, dict) else ["everything"]
    if missing:
        raise DataError(f"cifar10n: '{path}' lacks {', '.join(missing)}; it is not the published CIFAR-10N file")
    return {key: np.asarray(value, dtype=np.int64) for key, value in data.items()}


def human_labels(path: str | Path, label_set: str, source: str, pool_labels: torch.Tensor,
                 class_names: list[str]) -> torch.Tensor:
    """The ``label_set`` label of every image of the training pool, in the pool's order."""
    data = load_label_file(path)
    clean, noisy = data["clean_label"], data[LABEL_SETS[label_set]]
    pool = pool_labels.cpu().numpy()
    if tuple(class_names) != CIFAR10_CLASSES or len(pool) != len(clean):
        raise DataError(f"cifar10n labels the 50,000 CIFAR-10 training images; this data set has "
                        f"{len(pool)} training images of classes {', '.join(class_names[:10])}")
    if source == "imagefolder":
        # Original image i is the k-th file of its class, k counting earlier images of that class.
        order = np.argsort(clean, kind="stable")  # original indices, class by class, in original order
        starts = np.searchsorted(pool, np.arange(len(class_names)))
        counts = np.bincount(clean, minlength=len(class_names))
        if not np.array_equal(np.bincount(pool, minlength=len(class_names)), counts):
            raise DataError("cifar10n: the class folders hold other numbers of images than CIFAR-10's "
                            "training set; the label file cannot be matched to them")
        within = np.arange(len(clean)) - np.repeat(np.cumsum(counts) - counts, counts)
        position = np.empty(len(clean), dtype=np.int64)
        position[order] = starts[clean[order]] + within
        mapped_clean = np.empty_like(clean)
        mapped_noisy = np.empty_like(noisy)
        mapped_clean[position], mapped_noisy[position] = clean, noisy
        clean, noisy = mapped_clean, mapped_noisy
    if not np.array_equal(clean, pool):
        raise DataError("cifar10n: the label file's clean labels do not match this data's labels in order; "
                        "use torchvision's CIFAR-10 files or a tree whose files are numbered in the original order")
    return torch.from_numpy(noisy)
