"""Training-input throughput: LAW's in-memory tensor pipeline vs torchvision's.

Both produce the same thing, augmented and normalised CIFAR-10 batches of
128 (random 32 px crop of the 4 px zero-padded image, random horizontal flip):

* tensor: images decoded once into a uint8 tensor on the device; crop, flip
  and normalisation batched on tensors (``law.data``), one CPU thread;
* torchvision: ``ImageFolder`` + PIL transforms (RandomCrop(32, padding=4),
  RandomHorizontalFlip, ToTensor, Normalize) + ``DataLoader`` with workers.

Run from the project root (reads the shared CIFAR-10 JPEGs; a .tar is
unpacked once into the LAW cache directory):

    python scripts/bench_data.py --max-images 20000 --workers 2 --output runs/bench_data.json
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tarfile
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from law.data import DataConfig, cache_dir, load_data  # noqa: E402
from law.io import atomic_write_json, code_revision  # noqa: E402

DEFAULT_ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], add_help=add_help)
    parser.add_argument("--data-root", default=str(DEFAULT_ROOT),
                        help="folder with train/<class>/*.jpg, a folder holding cifar10-jpg.tar, or the .tar itself")
    parser.add_argument("--max-images", type=int, default=10240, help="images timed per pipeline")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers of the torchvision pipeline")
    parser.add_argument("--device", default="cpu", help="device of the tensor pipeline")
    parser.add_argument("--output", default="", help="write the results as JSON here")
    return parser


def image_tree(root: str) -> Path:
    """The folder holding train/: given directly, or unpacked once from the tar."""
    path = Path(root).expanduser()
    if (path / "train").is_dir():
        return path
    archive = path if path.is_file() else path / "cifar10-jpg.tar"
    if not archive.is_file():
        sys.exit(f"no train/ folder and no cifar10-jpg.tar at {path}; pass --data-root")
    target = cache_dir() / archive.name.removesuffix(".tar")
    if not (target / ".complete").is_file():
        print(f"unpacking {archive} into {target} (once)", flush=True)
        target.mkdir(parents=True, exist_ok=True)
        with tarfile.open(archive) as tar:
            tar.extractall(target, filter="data")
        (target / ".complete").touch()
    found = [p.parent for p in target.glob("**/train") if p.is_dir()]
    if not found:
        sys.exit(f"{archive} holds no train/ folder")
    return found[0]


def rate(batches, max_images: int) -> float:
    """Images per second, after one warm-up batch (worker start-up, first allocations)."""
    next(batches)
    seen, start = 0, time.perf_counter()
    for inputs in batches:
        seen += len(inputs)
        if seen >= max_images:
            break
    return seen / (time.perf_counter() - start)


def tensor_pipeline(tree: Path, args) -> tuple[float, float]:
    torch.set_num_threads(1)
    start = time.perf_counter()
    cfg = DataConfig(dataset="imagefolder", data_root=str(tree), val_size=0, batch_size=args.batch_size)
    bundle = load_data(cfg, seed=0, device=args.device)
    load_s = time.perf_counter() - start
    sync = torch.cuda.synchronize if bundle.device.type == "cuda" else (lambda: None)

    def batches():
        for batch in bundle.train_stream(seed=0):
            sync()  # count finished batches, not queued kernels
            yield batch.inputs

    return rate(batches(), args.max_images), load_s


def torchvision_pipeline(tree: Path, args) -> float:
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms

    transform = transforms.Compose([
        transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(), transforms.ToTensor(),
        transforms.Normalize((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))])
    dataset = datasets.ImageFolder(str(tree / "train"), transform=transform)
    loader = DataLoader(dataset, batch_size=args.batch_size, shuffle=True, num_workers=args.workers,
                        drop_last=True, persistent_workers=args.workers > 0)
    return rate((x for x, _ in loader), args.max_images)


def main(argv: list[str] | None = None) -> dict:
    args = get_args_parser().parse_args(argv)
    warnings.filterwarnings("ignore", message="The image decoding", category=DeprecationWarning)
    tree = image_tree(args.data_root)
    tensor_rate, load_s = tensor_pipeline(tree, args)
    print(f"tensor pipeline      {tensor_rate:10.0f} img/s  (1 thread, {args.device}; decode/cache load "
          f"{load_s:.1f} s once)", flush=True)
    torch.set_num_threads(max(os.cpu_count() or 1, 1))
    baseline_rate = torchvision_pipeline(tree, args)
    print(f"torchvision pipeline {baseline_rate:10.0f} img/s  ({args.workers} DataLoader workers)")
    print(f"ratio                {tensor_rate / baseline_rate:10.1f}x")
    results = {
        "tensor_images_per_s": tensor_rate, "torchvision_images_per_s": baseline_rate,
        "ratio": tensor_rate / baseline_rate, "tensor_load_s": load_s, "args": vars(args),
        "data": str(tree), "machine": platform.platform(), "cpus": os.cpu_count(),
        "torch": torch.__version__, "code": code_revision(),
    }
    if args.output:
        atomic_write_json(results, args.output)
    return results


if __name__ == "__main__":
    main()
