"""Where checkpoints come from: a local folder, or a Hugging Face Hub repository in the standard cache.

Only safetensors weights are ever fetched or read; pickle files (`pytorch_model.bin`) are refused, because
unpickling runs arbitrary code. Offline, a repository that is not cached fails at once with a clear message
instead of the Hub client's retry loop (about 30 s).

A repository is fetched in stages, so that nothing large arrives before it is known to be wanted: first
config.json and the weights' index alone (`hub_folder` with `PLAN_FILES`), then, once `core.checkpoint` has
checked the config against the caller's needs and the size cap, only the root weight files the index names,
whose sizes the Hub's file metadata states before anything is downloaded, with the tokenizer's small files
(`fetch_files`). Every download first reserves room in the app's share of the cache (`core.hub_cache`), so that
typed repo ids cannot fill the disk. Messages name the repo id (or a local folder's own name) and file names, never
a path of the server.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import time
from fnmatch import fnmatch
from pathlib import Path
from urllib.parse import urlparse

from .hub_cache import CacheFull, discard, room_for, touch

log = logging.getLogger(__name__)

# The small files of a model folder, and nothing that can execute code. Weights are fetched apart, by name,
# after their size is checked (`fetch_files`): a "*.safetensors" pattern would also match every subfolder's
# weights (a diffusion pipeline's unet/, vae/, text_encoder/...).
CHECKPOINT_FILES = [
    "config.json",
    "model.safetensors.index.json",  # which root files hold the weights
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",  # where newer tokenizers keep their chat template (core.chat)
    "special_tokens_map.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "preprocessor_config.json",
]
TOKENIZER_FILES = CHECKPOINT_FILES
# What a load reads first, alone: the settings and the index saying which files hold the weights.
PLAN_FILES = ["config.json", "model.safetensors.index.json"]
# Any one of the small files above larger than this is not what it claims to be (BERT's vocab.txt is 230 kB,
# the largest tokenizer.json of a 250k vocabulary about 20 MB).
MAX_SMALL_FILE_BYTES = 64_000_000

# "owner/name" or a legacy single name such as "gpt2"; no path separators beyond one slash, no "..".
_REPO_ID = re.compile(r"^(?:[A-Za-z0-9][\w.-]{0,95}/)?[A-Za-z0-9][\w.-]{0,95}$")


class CheckpointError(RuntimeError):
    """A checkpoint cannot be opened; the message says why in words a user can act on."""


# A revision a user may name: the default branch, a training checkpoint's branch (Pythia publishes "step0" ...
# "step143000"), or a full commit id. Anything else (other branch names, "refs/pr/1", "../x") is refused: the
# string becomes part of a cache path and of a Hub URL.
_REVISION = re.compile(r"^(?:main|step[0-9]{1,7}|[0-9a-f]{40})$")
REVISION_SEPARATOR = "@"


def is_repo_id(source: str) -> bool:
    return bool(_REPO_ID.match(source)) and ".." not in source and not source.endswith((".", "-"))


def is_revision(revision: str) -> bool:
    return isinstance(revision, str) and bool(_REVISION.fullmatch(revision))


def split_revision(source: str) -> tuple[str, str | None]:
    """"owner/name@step1000" -> ("owner/name", "step1000"); a plain id has no revision (None: the default
    branch). Raises CheckpointError when the revision is not one `is_revision` accepts."""
    repo_id, separator, revision = source.partition(REVISION_SEPARATOR)
    if not separator:
        return source, None
    if not is_revision(revision):
        raise CheckpointError(f"{revision[:60]!r} is not a revision this app opens: use main, stepN (a training "
                              "checkpoint such as step1000) or a 40-character commit id.")
    return repo_id, revision


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


def megabytes_setting(name: str, default: int) -> int:
    """A byte limit from the environment variable `name` in megabytes, else `default` megabytes; anything but a
    whole number above 0 stops with a clear message rather than running unbounded."""
    text = os.environ.get(name, "").strip()
    if not text:
        return default * 1_000_000
    if not text.isdigit() or int(text) == 0:
        raise ValueError(f"{name} must be a whole number of megabytes above 0, not {text!r}")
    return int(text) * 1_000_000


def megabytes(size: float) -> str:
    """A size for messages: whole megabytes, with one decimal below 10 MB."""
    return f"{size / 1e6:,.0f} MB" if size >= 10e6 else f"{size / 1e6:.1f} MB"


def snapshot_repo(folder: str | os.PathLike) -> tuple[str, str] | None:
    """(repo id, commit) when `folder` is a snapshot of the Hugging Face cache
    (`.../models--owner--name/snapshots/<commit>`), else None."""
    folder = Path(folder)
    repo_folder = folder.parent.parent.name
    if folder.parent.name != "snapshots" or not repo_folder.startswith("models--"):
        return None
    return repo_folder.removeprefix("models--").replace("--", "/"), folder.name


def display_name(source: str | os.PathLike) -> str:
    """What messages call a checkpoint: its repo id, or a local folder's own name; never a server path."""
    repo = snapshot_repo(source)
    if repo is not None:
        return repo[0]
    text = str(source)
    return text if is_repo_id(text) and not Path(text).is_absolute() else Path(text).name or text


def remote_files(repo_id: str, revision: str | None = None) -> tuple[str, dict[str, int]]:
    """The commit and every file of a Hub repository with its size in bytes, from the Hub's metadata (one
    request, nothing downloaded)."""
    from huggingface_hub import HfApi

    try:
        info = HfApi().model_info(repo_id, revision=revision, files_metadata=True)
    except Exception as error:
        raise CheckpointError(f"Cannot open Hub repository {repo_id!r}: {type(error).__name__}") from None
    return info.sha or revision or "main", {s.rfilename: int(s.size or 0) for s in info.siblings or []}


def _download(repo_id: str, name: str, commit: str | None) -> Path:
    # `commit` may also be a branch ("main", "step1000"): the cache then records where that branch points.
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(repo_id, name, revision=commit))
    except Exception as error:
        raise CheckpointError(f"Cannot fetch {name} of {repo_id!r}: {type(error).__name__}") from None


def fetch_files(folder: Path, names: list[str], max_total_bytes: int | None = None, what: str = "weights",
                optional: list[str] | tuple[str, ...] = ()) -> None:
    """Make sure the root files `names` are in `folder`, fetching the missing ones from the Hub when `folder` is a
    cache snapshot. Sizes come from the Hub's metadata first: over `max_total_bytes` in all, nothing is fetched.
    The `optional` small files that the repository has and the snapshot lacks come too (offline, none).
    """
    missing = [name for name in names if not (folder / name).is_file()]
    lacking = [name for name in optional if not (folder / name).is_file()]
    repo = snapshot_repo(folder)
    if repo is None or not (missing or lacking):
        if missing:
            raise CheckpointError(f"{display_name(folder)} lacks {', '.join(missing[:4])}")
        return
    repo_id, commit = repo
    if not hub_reachable():
        if missing:
            raise CheckpointError(f"{repo_id!r}: {', '.join(missing[:4])} not in the local Hugging Face cache and "
                                  "the Hub cannot be reached (offline).")
        return
    _, sizes = remote_files(repo_id, commit)
    absent = [name for name in missing if name not in sizes]
    if absent:
        raise CheckpointError(f"{repo_id!r} has no {', '.join(absent[:4])}")
    total = sum(sizes[name] for name in names if name in sizes)
    if max_total_bytes is not None and total > max_total_bytes:
        raise CheckpointError(f"{repo_id!r}: its {what} take {megabytes(total)}; this server fetches at most "
                              f"{megabytes(max_total_bytes)} of {what} for a model (PLAYGROUND_MAX_MODEL_MB).")
    small = [name for name in lacking if 0 < sizes.get(name, 0) <= MAX_SMALL_FILE_BYTES]
    fetched = missing + small
    if not fetched:
        return
    try:
        with room_for(repo_id, commit, sum(sizes[name] for name in fetched), repr(repo_id)) as arrived:
            for name in fetched:
                log.info("downloading %s of %s (%d bytes)", name, repo_id, sizes[name])
                _download(repo_id, name, commit)
                arrived(sizes[name])
    except CacheFull as error:
        raise CheckpointError(str(error)) from None


def cached_folder(repo_id: str, patterns: list[str] | None = None, revision: str | None = None) -> Path | None:
    """The cached snapshot of `repo_id` (at `revision`, by default the main branch) if one with a config.json is
    on disk, else None (no network)."""
    from huggingface_hub import snapshot_download

    if revision is not None and not is_revision(revision):
        return None
    try:
        folder = Path(snapshot_download(repo_id, revision=revision, allow_patterns=patterns or CHECKPOINT_FILES,
                                        local_files_only=True))
    except Exception:  # huggingface_hub raises several kinds for "not in cache"
        return None
    return folder if (folder / "config.json").is_file() else None


def local_folder(source: str | os.PathLike, patterns: list[str] | None = None) -> Path:
    """Return a local folder holding the checkpoint named by `source`: an existing directory, or a Hub repo
    (at a revision when one follows "@": "EleutherAI/pythia-70m@step1000")."""
    path = Path(source).expanduser()
    if path.is_dir():
        return path
    repo_id, revision = split_revision(str(source))
    return hub_folder(repo_id, patterns, revision)


def hub_folder(repo_id: str, patterns: list[str] | None = None, revision: str | None = None) -> Path:
    """The snapshot folder of Hub repo `repo_id` at `revision` (None: the main branch; else one that
    `is_revision` accepts), from the cache when present, else downloaded.

    Only small JSON/text files are fetched here (`patterns`, by default all of them; a load asks for
    `PLAN_FILES` alone), each first checked for size in the Hub's metadata; the weights and the other small
    files come later, once the model is checked, from `fetch_files`. `repo_id` is never read as a local path, even when a
    folder of that name exists: the app passes user-typed ids here, and a local path is something only the
    person starting the app may name.
    """
    if not is_repo_id(repo_id):
        raise CheckpointError(f"{display_name(repo_id)!r} is neither a local folder nor a valid Hub repo id (owner/name).")
    if revision is not None and not is_revision(revision):
        raise CheckpointError(f"{revision[:60]!r} is not a revision this app opens: use main, stepN or a commit id.")
    folder = cached_folder(repo_id, patterns, revision)
    if folder is not None:
        touch(folder)  # used now: the last to be evicted
        return folder
    at = f" at {revision}" if revision else ""
    if not hub_reachable():
        raise CheckpointError(
            f"{repo_id!r}{at} is not in the local Hugging Face cache and the Hub cannot be reached (offline). "
            "Run `python app.py --download` while online, or use an embedded model."
        )
    commit, sizes = remote_files(repo_id, revision)
    if not any(name.endswith(".safetensors") and "/" not in name for name in sizes):
        raise CheckpointError(
            f"Hub repository {repo_id!r} has no safetensors weights; pickle files are never loaded for safety."
        )
    # Root files only (a pattern without a slash never matches inside a subfolder), each of a plausible size.
    wanted = [name for name in sizes if "/" not in name and any(fnmatch(name, p) for p in patterns or CHECKPOINT_FILES)]
    oversized = [name for name in wanted if sizes[name] > MAX_SMALL_FILE_BYTES]
    if oversized:
        raise CheckpointError(f"{repo_id!r}: {oversized[0]} is {megabytes(sizes[oversized[0]])}, far larger than "
                              "such a file can be; it is not fetched.")
    if "config.json" not in wanted:
        raise CheckpointError(f"Hub repository {repo_id!r} has no config.json")
    log.info("downloading the small files of %s", repo_id)
    folder = None
    try:
        with room_for(repo_id, commit, sum(sizes[name] for name in wanted), f"{repo_id!r}{at}") as arrived:
            # By branch, not commit, so that the cache records where the branch points and finds it offline.
            folder = _download(repo_id, "config.json", revision).parent
            arrived(sizes["config.json"])
            for name in wanted:
                if name != "config.json":
                    _download(repo_id, name, snapshot_repo(folder)[1])
                    arrived(sizes[name])
    except CacheFull as error:
        raise CheckpointError(str(error)) from None
    except CheckpointError:
        if folder is not None:
            discard(folder)  # half a set of small files is of no use to a later load
        raise
    return folder
