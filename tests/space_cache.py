"""A Hugging Face cache laid out as `preload_from_hub` leaves it on a Space, for tests that run offline.

The Space's build downloads the listed files of each repo into the standard cache: the bytes under `blobs/`
(named by their hash), the revision's file names under `snapshots/<commit>/` as relative links to the blobs,
and `refs/main` naming the commit. Only the listed files are there.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

COMMIT = "5a7c1ee2" * 5  # any 40 hex digits: the cache only needs refs/main to name the snapshot folder


def preload(cache: Path, repo_id: str, folder: Path, files: list[str] | None = None) -> Path:
    """Put `files` of `folder` (default: all) into `cache` as repo `repo_id`; returns the snapshot folder."""
    repo = Path(cache) / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / COMMIT
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    snapshot.mkdir(parents=True, exist_ok=True)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(COMMIT)
    for name in files or sorted(p.name for p in Path(folder).iterdir() if p.is_file()):
        data = (Path(folder) / name).read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        os.symlink(os.path.relpath(blob, snapshot), snapshot / name)
    return snapshot
