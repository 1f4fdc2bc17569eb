"""Durable artifacts: every file is written to a temp name, then renamed.

A crash mid-write leaves the previous file intact, never a truncated one.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import gymnasium
import numpy
import ray
import torch
import torchvision

from law.errors import ConfigError


_UMASK = os.umask(0)
os.umask(_UMASK)


@contextmanager
def interrupt_deferred() -> Iterator[None]:
    """Hold a Ctrl-C (SIGINT) that arrives inside the block and act on it once the block is done.

    A write and its rename are then one step: an interrupt inside ``torch.save`` would
    otherwise tear the zip writer apart (its ``__exit__`` raises over the
    KeyboardInterrupt) instead of stopping cleanly after the file is in place. Only the
    main thread receives signals, so elsewhere (and where SIGINT is ignored) nothing changes.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    if not callable(previous):  # ignored, the OS default, or not installed from Python
        yield
        return
    received: list = []
    signal.signal(signal.SIGINT, lambda signum, frame: received.append((signum, frame)))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if received:
            previous(*received[0])  # Python's default handler raises KeyboardInterrupt here


def _atomic_write(path: str | os.PathLike, write) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with interrupt_deferred():
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; results are read by others too
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return path


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` that never leaves a half-written file behind."""
    return _atomic_write(path, lambda f: torch.save(obj, f))


def atomic_write_json(obj: Any, path: str | os.PathLike) -> Path:
    data = json.dumps(obj, indent=2, sort_keys=False, default=str).encode() + b"\n"
    return _atomic_write(path, lambda f: f.write(data))


def atomic_write_text(text: str, path: str | os.PathLike) -> Path:
    return _atomic_write(path, lambda f: f.write(text.encode()))


def check_writable_dir(path: str | os.PathLike, field: str) -> Path:
    """Refuse, before any work, a folder that cannot be made or written into.

    Nothing is created: the nearest existing ancestor must be a writable folder,
    and ``path`` itself, if it exists, a folder.
    """
    path = Path(path).expanduser()
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if path.exists() and not path.is_dir():
        raise ConfigError(field, f"'{path}' is a file, not a folder; pass a folder")
    if not existing.is_dir():
        raise ConfigError(field, f"'{path}' cannot be made: '{existing}' is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(field, f"'{path}' cannot be made: no permission to write in '{existing}'")
    return path


def new_run_dir(output_dir: str, run_name: str, default_name: str) -> Path:
    """``output_dir/run_name`` (or ``default_name``), checked but not made; refuses to reuse a
    non-empty folder."""
    check_writable_dir(output_dir, "output_dir")
    path = Path(output_dir).expanduser() / (run_name or default_name)
    check_writable_dir(path, "run_name")
    if path.exists() and any(path.iterdir()):
        raise ConfigError("run_name", f"run folder {path} already exists and is not empty; "
                                      "pick another --run-name or --output-dir")
    return path


@contextmanager
def run_folder(path: Path, keep: tuple[str, ...] = ("results.json",)) -> Iterator[Path]:
    """Make the run folder; if the run fails before writing any of ``keep``, remove it again,
    so a run that died at its start leaves no folder of TensorBoard debris behind."""
    made = not path.exists()
    path.mkdir(parents=True, exist_ok=True)
    try:
        yield path
    except BaseException:
        if made and not any((path / name).exists() for name in keep):
            shutil.rmtree(path, ignore_errors=True)
        raise


def run_stamp() -> str:
    return time.strftime("%Y%m%d-%H%M%S")


def code_revision() -> str:
    """The git commit of the LAW source tree, or 'unknown' outside a checkout."""
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if out.returncode != 0:
        return "unknown"
    return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def environment_info() -> dict:
    """Versions and hardware a result was produced with."""
    info = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": numpy.__version__,
        "gymnasium": gymnasium.__version__,
        "code_revision": code_revision(),
        "command": " ".join(sys.argv),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    info["ray"] = ray.__version__
    return info
