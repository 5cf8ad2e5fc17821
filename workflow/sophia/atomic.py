"""Outputs appear whole or not at all: stages write into a sibling temp dir, then rename."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_dir(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a scratch directory that replaces `target` only if the block succeeds.

    The scratch dir sits next to `target` so the final rename stays on one filesystem
    (atomic); a failure or interrupt removes it, so no half-written output is ever
    mistaken for a finished one by Snakemake or by a user running a stage alone.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp makes it private; the output should not be
    try:
        yield tmp
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def atomic_files(target: str | os.PathLike[str], marker: str) -> Iterator[Path]:
    """Like `atomic_dir`, for a directory that also holds other outputs (nested adapter chains):
    files written into the yielded scratch dir are moved into `target` one by one, `marker`
    last, so the marker's presence means every other file is complete."""
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    (target / marker).unlink(missing_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=target))
    try:
        yield tmp
        if not (tmp / marker).is_file():
            raise FileNotFoundError(f"{marker} was not written")
        for item in sorted(tmp.iterdir(), key=lambda p: p.name == marker):
            dest = target / item.name
            if dest.is_dir():
                shutil.rmtree(dest)
            os.replace(item, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
