"""A stand-in Hugging Face cache for tests: a checkpoint folder placed where a download would have put it, so
that a custom repo id typed into a tab opens it offline through the app's real loading path."""

from __future__ import annotations

import shutil
from pathlib import Path

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def use_cache(monkeypatch, root: Path) -> Path:
    """Point huggingface_hub at `root` for this test (it reads the constant on every call)."""
    import huggingface_hub.constants

    root.mkdir(parents=True, exist_ok=True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(root))
    return root


def add_repo(root: Path, repo_id: str, folder: Path) -> None:
    """Copy `folder` in as the snapshot of `repo_id` at `COMMIT`, with `refs/main` naming it."""
    repo = Path(root) / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(COMMIT)
    shutil.copytree(folder, repo / "snapshots" / COMMIT, dirs_exist_ok=True)
