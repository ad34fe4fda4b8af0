"""Helpers for test suites: a cached quick zoo.

``cached_quick_zoo()`` builds the quick zoo once per version of the zoo's source code (its hash is
the cache key) under ``data/test-zoo/<hash>``; concurrent callers (xdist workers) wait on a file
lock instead of building twice.
"""

from __future__ import annotations

import fcntl
import hashlib
import shutil
from pathlib import Path

ZOO_SRC = Path(__file__).resolve().parent
ROOT = ZOO_SRC.parent.parent


# The modules whose code decides what a build produces (the cache key covers only these).
BUILD_MODULES = ("build.py", "chat.py", "corpus.py", "text.py", "tooluse.py", "vision.py")


def source_hash() -> str:
    digest = hashlib.sha256()
    for name in BUILD_MODULES:
        digest.update(name.encode() + (ZOO_SRC / name).read_bytes())
    return digest.hexdigest()[:16]


def cached_quick_zoo(cache_root: Path | None = None, seed: int = 0) -> Path:
    """Path of a complete quick zoo for the current source, building it if needed."""
    from modelhub.zoo.build import build_zoo

    base = cache_root or ROOT / "data" / "test-zoo"
    base.mkdir(parents=True, exist_ok=True)
    key = f"{source_hash()}-seed{seed}"
    target = base / key
    with open(base / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / "manifest.json").exists():
            build_zoo(target, seed=seed, quick=True, progress=False)
            for old in base.iterdir():  # keep the cache to the current source only
                if old.is_dir() and old.name != key and ".building" not in old.name:
                    shutil.rmtree(old, ignore_errors=True)
    return target
