"""The pretraining corpus of the scratch model: the running interpreter's standard library.

It is on every machine with Python, needs no download, and is real code; its exact content
depends on the Python version, so the model card records the version and a corpus digest.
"""

from __future__ import annotations

import hashlib
import random
import sysconfig
from dataclasses import dataclass
from pathlib import Path

# Test suites and demo folders are large and unlike the code users ask for.
_EXCLUDED_DIRS = {"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__",
                  "turtledemo", "ensurepip", "idlelib", "lib2to3", "pydoc_data"}


@dataclass(frozen=True)
class Corpus:
    train: list[str]
    eval: list[str]
    files: list[str]
    digest: str
    root: str


def stdlib_files(root: Path | None = None) -> list[Path]:
    root = root or Path(sysconfig.get_paths()["stdlib"])
    return sorted(
        p for p in root.rglob("*.py")
        if not _EXCLUDED_DIRS.intersection(p.relative_to(root).parts[:-1])
    )


def load_corpus(max_files: int, eval_files: int, seed: int, root: Path | None = None) -> Corpus:
    """Sample `max_files` files with `seed`; the last `eval_files` of the sample are held out."""
    root = root or Path(sysconfig.get_paths()["stdlib"])
    files = stdlib_files(root)
    if len(files) < 2:
        raise FileNotFoundError(f"no standard-library sources found under {root}")
    chosen = random.Random(seed).sample(files, min(max_files, len(files)))
    eval_files = min(eval_files, len(chosen) - 1)
    h = hashlib.sha256()
    texts = []
    for path in chosen:
        data = path.read_bytes()
        h.update(str(path.relative_to(root)).encode())
        h.update(data)
        texts.append(data.decode("utf-8", errors="replace"))
    split = len(texts) - eval_files
    return Corpus(
        train=texts[:split],
        eval=texts[split:],
        files=[str(p.relative_to(root)) for p in chosen],
        digest=h.hexdigest()[:16],
        root=str(root),
    )
