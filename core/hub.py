"""Where checkpoints come from: a local folder, or a Hugging Face Hub repository in the standard cache.

Only safetensors weights are ever fetched or read; pickle files (`pytorch_model.bin`) are refused, because
unpickling runs arbitrary code. Offline, a repository that is not cached fails at once with a clear message
instead of the Hub client's retry loop (about 30 s).
"""

from __future__ import annotations

import logging
import os
import re
import socket
import time
from pathlib import Path
from urllib.parse import urlparse

log = logging.getLogger(__name__)

# Everything a model folder needs, and nothing that can execute code.
CHECKPOINT_FILES = [
    "config.json",
    "*.safetensors",
    "model.safetensors.index.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "preprocessor_config.json",
]
TOKENIZER_FILES = [p for p in CHECKPOINT_FILES if "safetensors" not in p]

# "owner/name" or a legacy single name such as "gpt2"; no path separators beyond one slash, no "..".
_REPO_ID = re.compile(r"^(?:[A-Za-z0-9][\w.-]{0,95}/)?[A-Za-z0-9][\w.-]{0,95}$")


class CheckpointError(RuntimeError):
    """A checkpoint cannot be opened; the message says why in words a user can act on."""


def is_repo_id(source: str) -> bool:
    return bool(_REPO_ID.match(source)) and ".." not in source and not source.endswith((".", "-"))


def hub_is_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in {"1", "true", "yes", "on"}


_reachability: dict[str, tuple[float, bool]] = {}
REACHABILITY_TTL_S = 30.0


def hub_reachable(timeout: float = 2.0) -> bool:
    """A fast TCP check of the Hub endpoint, so that an offline lecture hall fails in seconds, not 30.

    The answer is remembered for 30 s: the app asks on every request for an uncached preset.
    """
    if hub_is_offline():
        return False
    endpoint_url = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    remembered = _reachability.get(endpoint_url)
    if remembered and time.monotonic() - remembered[0] < REACHABILITY_TTL_S:
        return remembered[1]
    reachable = _connect(endpoint_url, timeout)
    _reachability[endpoint_url] = (time.monotonic(), reachable)
    return reachable


def _connect(endpoint_url: str, timeout: float) -> bool:
    endpoint = urlparse(endpoint_url)
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        with socket.create_connection((endpoint.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


def cached_folder(repo_id: str, patterns: list[str] | None = None) -> Path | None:
    """The cached snapshot of `repo_id` if one with a config.json is on disk, else None (no network)."""
    from huggingface_hub import snapshot_download

    try:
        folder = Path(snapshot_download(repo_id, allow_patterns=patterns or CHECKPOINT_FILES, local_files_only=True))
    except Exception:  # huggingface_hub raises several kinds for "not in cache"
        return None
    return folder if (folder / "config.json").is_file() else None


def local_folder(source: str | os.PathLike, patterns: list[str] | None = None) -> Path:
    """Return a local folder holding the checkpoint named by `source`: an existing directory, or a Hub repo."""
    path = Path(source).expanduser()
    if path.is_dir():
        return path
    return hub_folder(str(source), patterns)


def hub_folder(repo_id: str, patterns: list[str] | None = None) -> Path:
    """The snapshot folder of Hub repo `repo_id`, from the cache when present, else downloaded.

    Only safetensors and JSON/text files are fetched. `repo_id` is never read as a local path, even when a
    folder of that name exists: the app passes user-typed ids here, and a local path is something only the
    person starting the app may name.
    """
    if not is_repo_id(repo_id):
        raise CheckpointError(f"{repo_id!r} is neither a local folder nor a valid Hub repo id (owner/name).")
    folder = cached_folder(repo_id, patterns)
    if folder is not None:
        return folder
    if not hub_reachable():
        raise CheckpointError(
            f"{repo_id!r} is not in the local Hugging Face cache and the Hub cannot be reached (offline). "
            "Run `python app.py --download` while online, or use an embedded model."
        )
    from huggingface_hub import HfApi, snapshot_download

    try:
        files = HfApi().list_repo_files(repo_id)
    except Exception as error:
        raise CheckpointError(f"Cannot open Hub repository {repo_id!r}: {type(error).__name__}: {error}") from None
    if not any(name.endswith(".safetensors") for name in files):
        raise CheckpointError(
            f"Hub repository {repo_id!r} has no safetensors weights; pickle files are never loaded for safety."
        )
    log.info("downloading %s", repo_id)
    return Path(snapshot_download(repo_id, allow_patterns=patterns or CHECKPOINT_FILES))
