"""The Hugging Face cache that this app writes, kept under a byte budget.

On a public server anyone may type a repo id, and each one may bring gigabytes (the per-model cap admits a 7 GB
fp32 file held in bf16); a visitor cycling through large repos would otherwise fill the disk. So every download the
app starts first reserves room for the bytes the Hub's metadata announces (`room_for`): the repositories the app
has fetched into, plus the downloads in flight, stay within `budget_bytes()` (PLAYGROUND_HUB_CACHE_MB, default
HUB_CACHE_MB). When a new download would pass it, the least recently used revisions go first; the revisions in use
(what the app registers with `protect`: loaded models, loads in progress, the presets) and the downloads in flight
never go. When even that cannot make room, the download is refused before a byte arrives.

Only repositories the app itself fetched into count and may be deleted (a marker file in the repository's cache
folder says so): a developer's own cache, shared with the app on a laptop, is left alone. Revisions are listed and
deleted with huggingface_hub's cache manager (`scan_cache_dir`, `delete_revisions`), which keeps refs, snapshots
and shared blobs consistent. A revision's last use is its snapshot folder's modification time: a download into it
changes it, and `touch` marks a load from the cache.

One lock makes a reservation's check and its evictions one step, so that two visitors starting downloads at once
cannot both pass the budget.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import threading
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

# 16 GB of a free Space's 50 GB disk: every Hub preset (about 6.2 GB) plus gpt2-xl's 6.4 GB fp32 file beside them,
# with room left for a few typed repos.
HUB_CACHE_MB = 16000
MARKER = ".playground-fetched"  # in models--owner--name/: this app downloaded into the repository


class CacheFull(RuntimeError):
    """No room for a download within the budget; the message names the repo id and sizes, never a path."""


def budget_bytes() -> int:
    """The budget for the app's downloads in bytes: PLAYGROUND_HUB_CACHE_MB if set, else HUB_CACHE_MB."""
    from .hub import megabytes_setting  # hub imports this module

    return megabytes_setting("PLAYGROUND_HUB_CACHE_MB", HUB_CACHE_MB)


def cache_root() -> Path:
    # Read on every call: huggingface_hub reads the constant so too, and tests point it elsewhere.
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def repo_folder(repo_id: str) -> Path:
    return cache_root() / f"models--{repo_id.replace('/', '--')}"


# Callables returning the sources in use ("owner/name" for the main branch, "owner/name@step1000" for another
# revision): their revisions are never deleted. The app registers its model cache and its presets.
PROTECTORS: list[Callable[[], Iterable[str]]] = []


def protect(sources: Callable[[], Iterable[str]]) -> None:
    PROTECTORS.append(sources)


@dataclass
class _Reservation:
    repo_id: str
    commit: str
    remaining: int  # bytes announced and not yet arrived


_lock = threading.Lock()
_reservations: list[_Reservation] = []


def _protected() -> set[tuple[str, str]]:
    """(repo id, revision) pairs in use; the revision a branch name ("main", "step1000") or a commit id."""
    pairs = set()
    for sources in PROTECTORS:
        for source in sources():
            repo_id, _, revision = source.partition("@")
            pairs.add((repo_id, revision or "main"))
    return pairs | {(r.repo_id, r.commit) for r in _reservations}


def _is_protected(repo, revision, protected: set[tuple[str, str]]) -> bool:
    names = {revision.commit_hash, *revision.refs}
    return any((repo.repo_id, name) in protected for name in names)


def _scan():
    """The cache's listing (None when there is no cache yet) and the repositories this app fetched into."""
    from huggingface_hub import scan_cache_dir

    root = cache_root()
    if not root.is_dir():
        return None, []
    listing = scan_cache_dir(root)
    owned = [repo for repo in listing.repos if repo.repo_type == "model" and (repo.repo_path / MARKER).is_file()]
    return listing, owned


def _last_used(revision) -> float:
    try:
        return revision.snapshot_path.stat().st_mtime
    except OSError:
        return 0.0


def _evict_for(needed: int, label: str) -> None:
    """Under the lock: delete the least recently used unprotected revisions until `needed` more bytes fit in the
    budget beside the cache and the reservations in flight, or raise CacheFull having deleted nothing."""
    from .hub import megabytes

    budget = budget_bytes()
    if needed > budget:
        raise CacheFull(f"{label} would download {megabytes(needed)}, more than this server keeps of downloaded "
                        f"models in all ({megabytes(budget)}, PLAYGROUND_HUB_CACHE_MB); it is not fetched.")
    listing, owned = _scan()
    used = sum(repo.size_on_disk for repo in owned) + sum(r.remaining for r in _reservations)
    if used + needed <= budget:
        return
    protected = _protected()
    candidates = sorted(((_last_used(revision), repo.repo_id, revision.commit_hash, repo) for repo in owned
                         for revision in repo.revisions if not _is_protected(repo, revision, protected)),
                        key=lambda candidate: candidate[:3])
    chosen: dict[str, list[str]] = {}  # repo id -> its commits to delete
    freed: dict[str, int] = {}
    for _, repo_id, commit, repo in candidates:
        if used - sum(freed.values()) + needed <= budget:
            break
        chosen.setdefault(repo_id, []).append(commit)
        freed[repo_id] = _deletion(listing, repo, chosen[repo_id]).expected_freed_size
    if used - sum(freed.values()) + needed > budget:
        raise CacheFull(f"No room for {label} ({megabytes(needed)} to download) now: the models in use fill this server's "
                        f"{megabytes(budget)} for downloaded models (PLAYGROUND_HUB_CACHE_MB). Try again later, "
                        "or choose a preset or an embedded model.")
    log.info("hub cache over budget: deleting %d revisions (%s)", sum(map(len, chosen.values())),
             megabytes(sum(freed.values())))
    for repo in owned:
        if repo.repo_id in chosen:
            _deletion(listing, repo, chosen[repo.repo_id]).execute()


def _deletion(listing, repo, commits: list[str]):
    """huggingface_hub's plan for deleting `commits` of `repo` alone (refs, snapshots, blobs no other revision
    links): the listing is narrowed to the one repository, as a commit id may also be another repository's (a
    duplicated repo keeps its history)."""
    return dataclasses.replace(listing, repos=frozenset({repo})).delete_revisions(*commits)


@contextmanager
def room_for(repo_id: str, commit: str, nbytes: int, label: str = ""):
    """Reserve `nbytes` for downloads into `repo_id` at `commit` while the block runs, evicting what the budget asks;
    raises CacheFull (nothing fetched, nothing deleted) when there is no room. Yields a callable to report each
    file's arrival, so that a finished file counts once, in the cache, not also as reserved. A block that fails
    leaves no half-downloaded file of the repository behind."""
    reservation = _Reservation(repo_id, commit, nbytes)
    with _lock:
        _evict_for(nbytes, label or repr(repo_id))
        _reservations.append(reservation)
        folder = repo_folder(repo_id)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / MARKER).touch()

    def arrived(size: int) -> None:
        with _lock:
            reservation.remaining = max(0, reservation.remaining - size)

    try:
        yield arrived
    except BaseException:
        with _lock:
            _reservations.remove(reservation)
            _drop_incomplete(repo_id)
        raise
    with _lock:
        _reservations.remove(reservation)


def _drop_incomplete(repo_id: str) -> None:
    """Under the lock: the partial blobs a failed download left (huggingface_hub keeps them to resume), unless
    another download into the same repository is writing its own."""
    if any(r.repo_id == repo_id for r in _reservations):
        return
    folder = repo_folder(repo_id)
    for partial in (folder / "blobs").glob("*.incomplete"):
        partial.unlink(missing_ok=True)
    if not (folder / "snapshots").is_dir() and folder.is_dir():
        shutil.rmtree(folder, ignore_errors=True)  # nothing arrived: not even the marker stays


def touch(folder: Path) -> None:
    """Mark a snapshot folder as used now (a load from the cache), for the least-recently-used order."""
    try:
        os.utime(folder)
    except OSError:
        pass


def discard(folder: Path) -> bool:
    """Delete the revision in the snapshot `folder` when the app fetched it and nothing uses it: what a refused
    load brought (its config.json, or weights that failed a check) must not stay. Returns whether it went."""
    from .hub import snapshot_repo

    repo = snapshot_repo(folder)
    if repo is None or Path(folder).resolve().parent.parent.parent != cache_root().resolve():
        return False
    repo_id, commit = repo
    with _lock:
        listing, owned = _scan()
        protected = _protected()
        for cached in owned:
            for revision in cached.revisions:
                if (cached.repo_id, revision.commit_hash) == (repo_id, commit) and not _is_protected(
                        cached, revision, protected):
                    _deletion(listing, cached, [commit]).execute()
                    return True
    return False
