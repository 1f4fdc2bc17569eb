"""Data layer: label noise, imbalance, splits, batched augmentation, loaders."""
from __future__ import annotations

import os
import pickle
import struct
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.io import write_png

from law.data import DataConfig, load_data
from law.errors import ConfigError, DataError
from law.loaders import BatchStream, TensorImages, crop_and_flip
from law.noise import corrupt_labels, imbalance_counts, proportional_counts, take_per_class

pytestmark = pytest.mark.filterwarnings(
    "ignore:The image decoding and encoding capabilities of TorchVision:DeprecationWarning")

TINY = dict(synthetic_train_size=600, synthetic_test_size=200, synthetic_image_size=8,
            val_size=100, batch_size=32, eval_batch_size=64)


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("LAW_CACHE_DIR", str(tmp_path / "cache"))


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------------------
# Label noise


def test_symmetric_noise_rate_and_uniform_replacement():
    clean = torch.arange(50_000) % 10
    noisy = corrupt_labels(clean, 10, "symmetric", 0.4, generator(0))
    # A uniform redraw keeps the true class 1 time in 10: 0.4 * 9/10 of labels change.
    assert abs((noisy != clean).float().mean().item() - 0.36) < 0.01
    changed_to = torch.bincount(noisy[noisy != clean], minlength=10).float()
    assert (changed_to / changed_to.sum() - 0.1).abs().max() < 0.01
    assert torch.equal(clean, torch.arange(50_000) % 10)  # input untouched


def test_symmetric_noise_is_seeded():
    clean = torch.arange(1000) % 10
    first = corrupt_labels(clean, 10, "symmetric", 0.4, generator(3))
    assert torch.equal(first, corrupt_labels(clean, 10, "symmetric", 0.4, generator(3)))
    assert not torch.equal(first, corrupt_labels(clean, 10, "symmetric", 0.4, generator(4)))


def test_pair_flip_maps_each_class_to_the_next():
    clean = torch.arange(20_000) % 5
    noisy = corrupt_labels(clean, 5, "pair", 0.3, generator(0))
    flipped = noisy != clean
    assert torch.equal(noisy[flipped], (clean[flipped] + 1) % 5)
    assert abs(flipped.float().mean().item() - 0.3) < 0.015
    assert torch.equal(corrupt_labels(clean, 5, "none", 0.3, generator(0)), clean)


def test_bundle_noise_mask_matches_labels():
    bundle = load_data(DataConfig(noise="symmetric", noise_rate=0.5, **TINY), seed=1)
    train = bundle.train
    assert train.noise_mask.dtype == torch.bool
    assert torch.equal(train.noise_mask, train.labels != train.clean_labels)
    assert 0.3 < train.noise_mask.float().mean().item() < 0.6
    assert torch.equal(bundle.class_counts, torch.bincount(train.labels, minlength=10))


# ----------------------------------------------------------------------------------------
# Imbalance and stratified draws


def test_longtail_profile_exact_counts():
    # ratio 16 over 5 classes: n_c = 400 * 16 ** (-c / 4) = 400 / 2 ** c.
    counts = imbalance_counts(torch.full((5,), 400), "longtail", ratio=16.0)
    assert counts.tolist() == [400, 200, 100, 50, 25]
    # Cui et al.'s CIFAR-10 profile at ratio 100: floor(5000 * 100 ** (-c / 9)).
    cifar = imbalance_counts(torch.full((10,), 5000), "longtail", ratio=100.0)
    assert cifar.tolist() == [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]


def test_step_profile_exact_counts():
    counts = imbalance_counts(torch.full((10,), 5000), "step", minority_classes=2, keep_fraction=0.04)
    assert counts.tolist() == [200, 200] + [5000] * 8
    cifar100 = imbalance_counts(torch.full((100,), 500), "step", minority_classes=10, keep_fraction=0.1)
    assert cifar100.tolist() == [50] * 10 + [500] * 90


def test_imbalanced_bundle_counts():
    # 2000-sample pool over 5 classes = 400 each; no validation split, so the profile is exact.
    longtail = DataConfig(imbalance="longtail", imbalance_ratio=16.0, val_size=0,
                          synthetic_classes=5, synthetic_train_size=2000, synthetic_image_size=8,
                          synthetic_test_size=50)
    assert load_data(longtail, seed=0).class_counts.tolist() == [400, 200, 100, 50, 25]
    # val first: 100 of 1000 per class leaves 400 per class; minority keeps floor(400 * 0.04) = 16.
    step = DataConfig(imbalance="step", synthetic_train_size=5000, synthetic_image_size=8,
                      synthetic_test_size=50)
    bundle = load_data(step, seed=0)
    assert bundle.class_counts.tolist() == [16, 16] + [400] * 8
    assert torch.bincount(bundle.val.labels, minlength=10).tolist() == [100] * 10


def test_train_subset_keeps_profile_and_size():
    cfg = DataConfig(imbalance="longtail", imbalance_ratio=16.0, val_size=0, train_size=155,
                     synthetic_classes=5, synthetic_train_size=2000, synthetic_image_size=8,
                     synthetic_test_size=50)
    # 775 kept ([400, 200, 100, 50, 25]); a 155-sample stratified subset is exactly 1/5 of it.
    assert load_data(cfg, seed=0).class_counts.tolist() == [80, 40, 20, 10, 5]


def test_proportional_counts_sum_exactly():
    counts = proportional_counts(torch.tensor([3, 3, 3]), 4)
    assert counts.sum() == 4 and counts.tolist() == [2, 1, 1]


def test_take_per_class_interleaved_prefixes_are_stratified():
    labels = torch.arange(300) // 100  # sorted by class, as ImageFolder lists files
    picked = take_per_class(labels, torch.tensor([10, 10, 10]), generator(0), interleave=True)
    assert torch.bincount(labels[picked[:6]], minlength=3).tolist() == [2, 2, 2]
    assert len(set(picked.tolist())) == 30


def test_val_split_is_clean_stratified_and_disjoint_from_train():
    bundle = load_data(DataConfig(noise="symmetric", noise_rate=0.9, **TINY), seed=0)
    assert not bundle.val.noise_mask.any()
    assert torch.equal(bundle.val.labels, bundle.val.clean_labels)
    assert torch.bincount(bundle.val.labels, minlength=10).tolist() == [10] * 10
    assert len(bundle.train) == 500 and len(bundle.test) == 200
    # Synthetic images are continuous noise, so equal pixels would mean a shared sample.
    train_px = bundle.train.store.images.flatten(1)
    val_px = bundle.val.store.images.flatten(1)
    assert len(torch.unique(torch.cat([train_px, val_px]), dim=0)) == len(train_px) + len(val_px)


# ----------------------------------------------------------------------------------------
# Batched augmentation


def test_crop_pads_with_zeros_and_shifts():
    image = torch.arange(1, 17, dtype=torch.uint8).view(1, 1, 4, 4)
    out = crop_and_flip(image, torch.tensor([[0, 2]]), torch.tensor([False]), padding=1)
    # Window starts one row above the image and one column right of it.
    expected = torch.tensor([[0, 0, 0, 0], [2, 3, 4, 0], [6, 7, 8, 0], [10, 11, 12, 0]], dtype=torch.uint8)
    assert torch.equal(out[0, 0], expected)
    centred = crop_and_flip(image, torch.tensor([[1, 1]]), torch.tensor([False]), padding=1)
    assert torch.equal(centred, image)


def test_flip_is_an_exact_mirror():
    images = torch.randint(0, 256, (3, 2, 5, 5), dtype=torch.uint8, generator=generator(0))
    centre = torch.full((3, 2), 4)
    out = crop_and_flip(images, centre, torch.tensor([True, False, True]), padding=4)
    assert torch.equal(out[0], images[0].flip(-1))
    assert torch.equal(out[1], images[1])
    assert torch.equal(out[2], images[2].flip(-1))


def test_stream_crops_shift_at_most_four_pixels_per_sample():
    images = torch.randint(1, 256, (64, 1, 6, 6), dtype=torch.uint8, generator=generator(0))
    store = TensorImages(images, mean=[0.0], std=[1 / 255], crop_padding=4, flip=True)
    stream = BatchStream(store, torch.zeros(64, dtype=torch.long), batch_size=64, seed=0)
    batch = next(stream)
    pixels = batch.inputs.round().to(torch.uint8)  # mean 0, std 1/255 undoes normalisation
    padded = torch.nn.functional.pad(images, (4, 4, 4, 4))
    shifts = set()
    for k in range(64):
        source = padded[batch.indices[k]]
        matches = [(dy, dx, flip) for dy in range(9) for dx in range(9) for flip in (False, True)
                   if torch.equal(pixels[k], (lambda w: w.flip(-1) if flip else w)(source[:, dy:dy + 6, dx:dx + 6]))]
        assert matches, f"sample {k} is no crop/flip of its source image"
        shifts.add(matches[0])
    assert len(shifts) > 10  # per-sample parameters, not one draw per batch


def test_mnist_style_store_never_flips():
    images = torch.randint(1, 256, (32, 1, 5, 5), dtype=torch.uint8, generator=generator(1))
    store = TensorImages(images, mean=[0.0], std=[1 / 255], crop_padding=0, flip=False)
    batch = next(BatchStream(store, torch.zeros(32, dtype=torch.long), batch_size=32, seed=0))
    assert torch.equal(batch.inputs.round().to(torch.uint8), images[batch.indices])


# ----------------------------------------------------------------------------------------
# Reproducible streams


def take(stream, n):
    return [next(stream) for _ in range(n)]


def test_same_seed_same_batches_across_epochs():
    bundle = load_data(DataConfig(**TINY), seed=0)
    first, second = take(bundle.train_stream(7), 20), take(bundle.train_stream(7), 20)
    other = take(bundle.train_stream(8), 20)
    assert bundle.train_stream(7).steps_per_epoch == 500 // 32
    for a, b in zip(first, second):
        assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(first[0].indices, other[0].indices)
    assert not torch.equal(first[0].inputs, other[0].inputs)
    # An epoch visits distinct samples; the next epoch reshuffles.
    epoch0 = torch.cat([b.indices for b in first[:15]])
    assert len(torch.unique(epoch0)) == 15 * 32
    assert not torch.equal(first[15].indices, first[0].indices)
    assert all(torch.equal(b.targets, bundle.train.labels[b.indices]) for b in first)


def test_stream_resumes_mid_epoch_and_counts_epochs():
    bundle = load_data(DataConfig(**TINY), seed=0)
    full = take(bundle.train_stream(3), 20)
    resumed = bundle.train_stream(3, start_step=13)
    assert resumed.epoch == pytest.approx(13 / 15)
    for a, b in zip(full[13:], take(resumed, 7)):
        assert torch.equal(a.inputs, b.inputs) and torch.equal(a.indices, b.indices)
    assert resumed.epoch == pytest.approx(20 / 15)


def test_eval_and_meta_batches():
    bundle = load_data(DataConfig(noise="pair", **TINY), seed=0)
    inputs, labels = zip(*bundle.eval_batches("test"))
    assert [len(x) for x in inputs] == [64, 64, 64, 8]
    assert torch.equal(torch.cat(labels), bundle.test.labels)
    assert inputs[0].dtype == torch.float32 and inputs[0].shape[1:] == (3, 8, 8)
    clean = torch.cat([y for _, y in bundle.eval_batches("train", clean=True)])
    assert torch.equal(clean, bundle.train.clean_labels)
    meta = bundle.meta_stream(seed=0, meta_size=40, batch_size=20)
    batches = [next(meta) for _ in range(4)]
    assert all(x.shape == (20, 3, 8, 8) for x, _ in batches)
    seen = torch.cat([y for _, y in batches[:2]])
    assert sorted(seen.tolist()) == sorted(bundle.val.labels[:40].tolist())
    with pytest.raises(DataError, match="meta"):
        bundle.meta_stream(seed=0, meta_size=10, batch_size=20)


# ----------------------------------------------------------------------------------------
# On-disk formats: CIFAR python batches, MNIST idx, ImageFolder trees


def write_cifar10(root: Path, per_batch: int = 6, test: int = 10) -> np.ndarray:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    first = None
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        n = test if name == "test_batch" else per_batch
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = [int(i % 10) for i in range(n)]
        with open(folder / name, "wb") as f:
            pickle.dump({"data": data, "labels": labels}, f)
        first = data if name == "test_batch" else first
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": names}, f)
    return first


def test_cifar10_python_batches(tmp_path):
    test_rows = write_cifar10(tmp_path)
    bundle = load_data(DataConfig(dataset="cifar10", data_root=str(tmp_path), val_size=10,
                                  batch_size=8), seed=0)
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (20, 10, 10)
    assert bundle.class_names[0] == "airplane" and bundle.num_classes == 10
    assert (bundle.in_channels, bundle.image_size, bundle.name) == (3, 32, "cifar10")
    # Rows are 1024 red, 1024 green, 1024 blue values, row-major.
    stored = bundle.test.store.images[0]
    assert torch.equal(stored, torch.from_numpy(test_rows[0].reshape(3, 32, 32)))
    assert next(bundle.train_stream(0)).inputs.shape == (8, 3, 32, 32)


def test_cifar100_python_batches(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    for name, n in (("train", 40), ("test", 10)):
        data = np.zeros((n, 3072), dtype=np.uint8)
        with open(folder / name, "wb") as f:
            pickle.dump({"data": data, "fine_labels": [i % 4 for i in range(n)]}, f)
    with open(folder / "meta", "wb") as f:
        pickle.dump({"fine_label_names": ["apple", "bee", "cat", "dog"]}, f)
    bundle = load_data(DataConfig(dataset="cifar100", data_root=str(folder), val_size=8, batch_size=8), seed=0)
    assert bundle.class_names == ["apple", "bee", "cat", "dog"] and len(bundle.train) == 32


def write_idx(path: Path, array: np.ndarray) -> None:
    magic = 0x08 << 8 | array.ndim  # 0x08: unsigned bytes, then the number of dimensions
    path.write_bytes(struct.pack(f">{1 + array.ndim}I", magic, *array.shape) + array.astype(np.uint8).tobytes())


def test_mnist_raw_idx_files(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 30), ("t10k", 10)):
        write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10)
    bundle = load_data(DataConfig(dataset="mnist", data_root=str(tmp_path), val_size=10, batch_size=4), seed=0)
    assert (bundle.in_channels, bundle.image_size, len(bundle.train), len(bundle.test)) == (1, 28, 20, 10)
    assert bundle.train.store.flip is False  # digits are not mirrored
    assert torch.equal(bundle.test.labels, torch.arange(10))
    assert next(bundle.train_stream(0)).inputs.shape == (4, 1, 28, 28)


def write_image_tree(root: Path, side: int, per_class: int = 4) -> None:
    for split in ("train", "test"):
        for c, name in enumerate(("cat", "dog", "emu")):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(per_class):
                value = 40 * c + 10 * i
                write_png(torch.full((3, side, side), value, dtype=torch.uint8), str(folder / f"{i}.png"))


def test_imagefolder_small_images_are_decoded_and_cached(tmp_path):
    write_image_tree(tmp_path / "tree", side=8)
    cfg = DataConfig(dataset="imagefolder", data_root=str(tmp_path / "tree"), val_size=3, batch_size=4)
    bundle = load_data(cfg, seed=0)
    assert bundle.class_names == ["cat", "dog", "emu"]
    assert isinstance(bundle.train.store, TensorImages) and bundle.image_size == 8
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (9, 3, 12)
    # Every decoded test image is the flat colour written for its class and index.
    assert torch.equal(bundle.test.store.images[:, 0, 0, 0].long(),
                       torch.tensor([40 * c + 10 * i for c in range(3) for i in range(4)]))
    caches = list((tmp_path / "cache").glob("imagefolder-*.pt"))
    assert len(caches) == 2  # train and test trees
    mtimes = [p.stat().st_mtime_ns for p in caches]
    again = load_data(cfg, seed=0)
    assert [p.stat().st_mtime_ns for p in caches] == mtimes  # read back, not rewritten
    assert torch.equal(again.test.store.images, bundle.test.store.images)


def test_imagefolder_streaming_is_reproducible(tmp_path):
    write_image_tree(tmp_path / "tree", side=12)
    cfg = DataConfig(dataset="imagefolder", data_root=str(tmp_path / "tree"), in_memory="never",
                     image_size=8, val_size=3, batch_size=3, loader_workers=0, eval_batch_size=5)
    bundle = load_data(cfg, seed=0)
    assert bundle.image_size == 8 and bundle.in_channels == 3
    a, b = take(bundle.train_stream(1), 4), take(bundle.train_stream(1), 4)
    assert all(torch.equal(x.inputs, y.inputs) and torch.equal(x.indices, y.indices) for x, y in zip(a, b))
    assert a[0].inputs.shape == (3, 3, 8, 8)
    assert [len(x) for x, _ in bundle.eval_batches("test")] == [5, 5, 2]


# ----------------------------------------------------------------------------------------
# Errors the user can act on


def test_missing_cifar_names_the_flags(tmp_path):
    with pytest.raises(DataError) as info:
        load_data(DataConfig(dataset="cifar10", data_root=str(tmp_path / "nowhere")), seed=0)
    assert "--data-root" in str(info.value) and "--download" in str(info.value)
    assert "cifar-10-batches-py" in str(info.value)


def test_missing_mnist_and_imagefolder_roots(tmp_path):
    with pytest.raises(DataError, match="--data-root"):
        load_data(DataConfig(dataset="mnist", data_root=str(tmp_path)), seed=0)
    with pytest.raises(DataError, match="train/"):
        load_data(DataConfig(dataset="imagefolder", data_root=str(tmp_path / "missing")), seed=0)


def test_imagefolder_with_other_classes_in_test_is_refused_naming_them(tmp_path):
    write_image_tree(tmp_path / "tree", side=8)
    (tmp_path / "tree" / "test" / "emu").rename(tmp_path / "tree" / "test" / "yak")
    with pytest.raises(DataError, match="only in train/: emu; only in test/: yak"):
        load_data(DataConfig(dataset="imagefolder", data_root=str(tmp_path / "tree"), val_size=3), seed=0)


def test_too_large_subsets_fail_before_training():
    with pytest.raises(DataError, match="--train-size"):
        load_data(DataConfig(train_size=10_000, **TINY), seed=0)
    with pytest.raises(DataError, match="--batch-size"):
        load_data(DataConfig(**{**TINY, "batch_size": 1000}), seed=0).train_stream(0)


@pytest.mark.parametrize("field,value", [
    ("dataset", "imagenet"), ("noise", "gaussian"), ("noise_rate", 1.5), ("imbalance", "zipf"),
    ("imbalance_ratio", 0.5), ("step_keep_fraction", 0.0), ("train_size", -1), ("batch_size", 0),
    ("flip", "maybe"), ("in_memory", "yes"), ("synthetic_classes", 1),
])
def test_bad_config_values(field, value):
    with pytest.raises(ConfigError) as info:
        DataConfig(**{field: value}).validate()
    assert info.value.field == field


def test_config_errors_name_known_datasets_and_root():
    with pytest.raises(ConfigError, match="cifar10, cifar100"):
        DataConfig(dataset="imagenet").validate()
    with pytest.raises(ConfigError, match="data-root"):
        DataConfig(dataset="cifar10").validate()
    with pytest.raises(ConfigError) as info:
        load_data(DataConfig(imbalance="step", step_minority_classes=10, **TINY), seed=0)
    assert info.value.field == "step_minority_classes"


@pytest.mark.skipif(not os.environ.get("LAW_CIFAR10_JPG"), reason="set LAW_CIFAR10_JPG to the CIFAR-10 JPEG tree")
def test_real_cifar10_jpeg_tree():
    cfg = DataConfig(dataset="imagefolder", data_root=os.environ["LAW_CIFAR10_JPG"], train_size=500,
                     val_size=100, test_size=200, noise="symmetric")
    bundle = load_data(cfg, seed=0)
    assert bundle.class_names[:2] == ["airplane", "automobile"] and bundle.num_classes == 10
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (500, 100, 200)
    assert bundle.class_counts.sum() == 500
    assert next(bundle.train_stream(0)).inputs.shape == (128, 3, 32, 32)


# ----------------------------------------------------------------------------------------
# CIFAR-10N: real human labels, matched to the images


CIFAR10 = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def write_cifar10n(path: Path, clean: np.ndarray, seed: int = 0) -> dict[str, np.ndarray]:
    """A label file in the published format: torch.save of a dict of int64 numpy arrays."""
    rng = np.random.default_rng(seed)
    labels = {"clean_label": clean}
    for key, rate in (("aggre_label", 0.1), ("worse_label", 0.4), ("random_label1", 0.2),
                      ("random_label2", 0.2), ("random_label3", 0.2)):
        noisy = clean.copy()
        flip = rng.random(len(clean)) < rate
        noisy[flip] = (clean[flip] + rng.integers(1, 10, flip.sum())) % 10
        labels[key] = noisy
    torch.save(labels, path)
    return labels


def write_cifar10n_tree(root: Path, images: int = 250) -> np.ndarray:
    """train/ and test/ ImageFolder trees of CIFAR-10's classes, image i of class i % 10 (the label
    file's order); returns the clean labels."""
    clean = np.arange(images) % 10
    for split in ("train", "test"):
        for i, label in enumerate(clean):
            folder = root / split / CIFAR10[label]
            folder.mkdir(parents=True, exist_ok=True)
            write_png(torch.full((3, 8, 8), 20 * label, dtype=torch.uint8), str(folder / f"{i // 10:04d}.png"))
    return clean


def test_cifar10n_labels_follow_each_image_of_an_imagefolder_tree(tmp_path):
    # 30 "original" images in a shuffled class order; image i has pixel value i, and is the
    # k-th file of its class folder, k counting earlier images of that class (the shared tree's layout).
    clean = np.random.default_rng(1).permutation(np.arange(30) % 10).astype(np.int64)
    for split in ("train", "test"):
        for i, label in enumerate(clean):
            folder = tmp_path / "tree" / split / CIFAR10[label]
            folder.mkdir(parents=True, exist_ok=True)
            k = int((clean[:i] == label).sum())
            write_png(torch.full((3, 8, 8), i, dtype=torch.uint8), str(folder / f"{k:04d}.png"))
    labels = write_cifar10n(tmp_path / "CIFAR-10_human.pt", clean)
    cfg = DataConfig(dataset="imagefolder", data_root=str(tmp_path / "tree"), noise="cifar10n", noise_label="worse",
                     noise_file=str(tmp_path / "CIFAR-10_human.pt"), val_size=10, batch_size=4, augment=False)
    bundle = load_data(cfg, seed=0)
    original = bundle.train.store.images[:, 0, 0, 0].long().numpy()  # which original image each one is
    assert np.array_equal(bundle.train.labels.numpy(), labels["worse_label"][original])
    assert np.array_equal(bundle.train.clean_labels.numpy(), clean[original])
    assert torch.equal(bundle.train.noise_mask, bundle.train.labels != bundle.train.clean_labels)
    val_original = bundle.val.store.images[:, 0, 0, 0].long().numpy()
    assert np.array_equal(bundle.val.labels.numpy(), clean[val_original]), "validation keeps the clean labels"
    assert "CIFAR-10N human labels 'worse'" in bundle.describe()


class Payload:
    """Stands for whatever a foreign pickle might carry."""


def test_cifar10n_on_torchvision_files_and_files_that_are_not_label_files(tmp_path):
    write_cifar10(tmp_path)
    clean = np.array([i % 10 for i in range(6)] * 5, dtype=np.int64)  # the order write_cifar10 writes
    labels = write_cifar10n(tmp_path / "human.pt", clean)
    cfg = DataConfig(dataset="cifar10", data_root=str(tmp_path), noise="cifar10n", noise_label="aggre",
                     noise_file=str(tmp_path / "human.pt"), val_size=0, batch_size=4)
    bundle = load_data(cfg, seed=0)
    assert np.array_equal(np.sort(bundle.train.labels.numpy()), np.sort(labels["aggre_label"]))
    assert bundle.train.noise_mask.sum() == (labels["aggre_label"] != clean).sum()

    torch.save({"clean_label": clean, "worse_label": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(DataError, match="not a CIFAR-10N label file"):
        load_data(replace(cfg, noise_file=str(tmp_path / "evil.pt")), seed=0)
    torch.save({"clean_label": clean[::-1].copy(), **{k: v for k, v in labels.items() if k != "clean_label"}},
               tmp_path / "shuffled.pt")
    with pytest.raises(DataError, match="do not match this data's labels in order"):
        load_data(replace(cfg, noise_file=str(tmp_path / "shuffled.pt")), seed=0)
    with pytest.raises(ConfigError, match="noise_file"):
        replace(cfg, noise_file="").validate()
    with pytest.raises(ConfigError, match="noise_label"):
        replace(cfg, noise_label="best").validate()


SHARED_HUMAN_LABELS = Path(__file__).resolve().parents[2] / "shared" / "data" / "CIFAR-10_human.pt"


@pytest.mark.skipif(not (os.environ.get("LAW_CIFAR10_JPG") and SHARED_HUMAN_LABELS.is_file()),
                    reason="set LAW_CIFAR10_JPG and keep ../shared/data/CIFAR-10_human.pt")
def test_real_cifar10n_noise_rates_match_the_published_ones():
    from law.datasets import load_image_folder
    from law.human_labels import human_labels

    raw = load_image_folder(os.environ["LAW_CIFAR10_JPG"], "always")
    published = {"aggre": 9.01, "random1": 17.23, "random2": 18.12, "random3": 17.64, "worse": 40.21}
    for label_set, rate in published.items():
        noisy = human_labels(SHARED_HUMAN_LABELS, label_set, raw.name, raw.train.labels, raw.class_names)
        assert 100 * float((noisy != raw.train.labels).float().mean()) == pytest.approx(rate, abs=0.005), label_set
