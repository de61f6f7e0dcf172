"""Keeps a long-running server inside its disk and memory budget.

Disk: uploads and result files are bounded by total size.

Gradio's `delete_cache=(frequency, age)` removes files by age only, so a burst of large uploads (a lecture
hall sending photos) can fill the disk within the age window. Every `SWEEP_EVERY_S` seconds, `sweep` looks at
Gradio's cache folder and the app's own output folders together; once they exceed `cache_cap_bytes()` (200 MB
unless PLAYGROUND_CACHE_MB says otherwise), it deletes the oldest files down to `LOW_WATER` of the cap. It
never deletes the files Gradio keeps for the page itself (component defaults such as the bundled example
pictures), nor files younger than `MIN_AGE_S`, which a client may be about to download.

The cache folder is taken to be this app's own (GRADIO_TEMP_DIR, or a Space's container): files other apps put
in a shared folder count towards the budget and may be deleted with the rest.

Memory: `steady_malloc` keeps the C heap from creeping up under a long mix of requests (see there).
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import re
import stat
import time
from collections.abc import Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

CACHE_CAP_MB = 200
# A sweep lists the folders, about 20 µs a file: for the few thousand files of a full budget, under 2% of a core.
SWEEP_EVERY_S = 5.0
# Over the cap, a sweep deletes down to 75% of it, leaving room for what arrives before the next sweep: in the
# soak, five picture views in a row bring about 30 MB (uploads with their derived pictures) within seconds.
LOW_WATER = 0.75
# A result file is fetched by the page right after its event ends; one minute leaves a wide margin.
MIN_AGE_S = 60.0
HASH_FOLDER = re.compile(r"[0-9a-f]{64}")  # Gradio's cache: <GRADIO_TEMP_DIR>/<sha256>/<file name>


def whole_number_setting(name: str, default: int) -> int:
    """A server limit from the environment variable `name`, else `default`; anything but a whole number of at
    least 1 stops the start with a clear message rather than running unbounded."""
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{name} must be a whole number of at least 1, not {value!r}")
    return int(value)


def cache_cap_bytes() -> int:
    """The disk budget for uploads and results: PLAYGROUND_CACHE_MB if set, else CACHE_CAP_MB."""
    return whole_number_setting("PLAYGROUND_CACHE_MB", CACHE_CAP_MB) * 1_000_000


@dataclass(frozen=True)
class SweepResult:
    total_bytes: int  # what the folders hold after the sweep
    deleted: tuple[str, ...]  # the files removed, oldest first


def list_files(folders: Iterable[str | Path]) -> list[tuple[float, int, str]]:
    """(ctime, size, path) of every regular file under the folders; links are neither followed nor counted."""
    found = []
    for folder in folders:
        for directory, _, names in os.walk(folder):
            for name in names:
                path = os.path.join(directory, name)
                try:
                    info = os.lstat(path)
                except FileNotFoundError:  # removed meanwhile by Gradio's own sweep
                    continue
                if stat.S_ISREG(info.st_mode):
                    # ctime, as Gradio's age sweep uses: a cached copy handed out again is touched.
                    found.append((info.st_ctime, info.st_size, path))
    return found


def sweep(folders: Iterable[str | Path], max_bytes: int, keep: Iterable[str] = (), min_age: float = MIN_AGE_S,
          now: float | None = None, down_to: int | None = None) -> SweepResult:
    """Once the files under `folders` hold more than `max_bytes` together, delete the oldest until they hold
    at most `down_to` (default `max_bytes`; lower leaves room for what arrives before the next sweep).

    Files in `keep` and files younger than `min_age` seconds are never deleted, so the total can stay above
    the cap for as long as those alone exceed it. Empty hash folders older than `min_age` are removed too.
    """
    folders = [Path(folder) for folder in folders if Path(folder).is_dir()]
    now = time.time() if now is None else now
    keep = {os.path.realpath(path) for path in keep}
    files = sorted(list_files(folders))
    total = sum(size for _, size, _ in files)
    goal = max_bytes if down_to is None or total <= max_bytes else min(down_to, max_bytes)
    deleted = []
    for ctime, size, path in files:
        if total <= goal:
            break
        if now - ctime < min_age or os.path.realpath(path) in keep:
            continue
        try:
            # Gradio touches a cached copy it hands out again; one handed out since the listing is young now.
            if now - os.lstat(path).st_ctime < min_age:
                continue
            os.remove(path)
        except FileNotFoundError:
            pass
        total -= size
        deleted.append(path)
    # Gradio stores each file in a folder named by its hash and never removes the folder; each empty one still
    # takes a disk block and an inode. Only those hash folders go, and only old ones: Gradio creates the
    # folder just before writing into it. Other folders (Gradio's own, say) stay.
    for folder in folders:
        for directory, subfolders, names in os.walk(folder, topdown=False):
            if subfolders or names or not HASH_FOLDER.fullmatch(os.path.basename(directory)):
                continue
            try:
                if now - os.lstat(directory).st_mtime >= min_age:
                    os.rmdir(directory)  # fails, harmlessly, if a file arrived meanwhile
            except OSError:
                pass
    return SweepResult(total_bytes=total, deleted=tuple(deleted))


def output_folders() -> list[Path]:
    """The app's own folders of files for clients: pictures (vision tabs) and JSON downloads."""
    from app.export import EXPORTS_DIR
    from app.vision_common import PICTURES_DIR

    return [PICTURES_DIR, EXPORTS_DIR]


def sweep_app(blocks, folders: list[Path], max_bytes: int, min_age: float = MIN_AGE_S) -> SweepResult:
    """One sweep of a running app's `folders` (Gradio's cache and the app's output folders: one budget)."""
    keep: set[str] = set()
    for block in blocks.blocks.values():  # as Gradio's own age sweep does: defaults and examples stay
        keep.update(getattr(block, "keep_in_cache", ()))
    result = sweep(folders, max_bytes, keep, min_age=min_age, down_to=int(LOW_WATER * max_bytes))
    if result.deleted:
        # Gradio remembers every file it put in its cache until its age sweep deletes it; a file deleted here
        # would otherwise be remembered for as long as the process lives.
        gone = set(result.deleted)
        for remembered in blocks.temp_file_sets:
            remembered.difference_update(gone)
        log.info("cache over budget: deleted %d files, %.1f MB left", len(gone), result.total_bytes / 1e6)
    return result


# glibc's mallopt parameter for the mmap threshold (M_MMAP_THRESHOLD in malloc.h).
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 256 * 1024


def steady_malloc() -> bool:
    """Serve every C allocation of 256 KB or more (decoded pictures, attention maps, large tensors) from its own
    memory map, returned to the system as soon as it is freed.

    glibc raises its mmap threshold each time such a block is freed, up to 32 MB; from then on large short-lived
    blocks are carved from the heap arenas between small long-lived ones, and the holes are rarely given back.
    Measured over 1,000 soak requests: the arenas grew from 212 to 227 MB (RSS 568 -> 580 MB from request 500
    to 1,000); with the threshold fixed at 256 KB they stayed at 182 MB (RSS 548 -> 554 MB). Decoding and
    forward passes took the same time within noise. A MALLOC_MMAP_THRESHOLD_ set in the environment wins.
    Returns whether the setting was applied (not on a C library other than glibc).
    """
    if "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
    except (OSError, AttributeError):
        return False


@asynccontextmanager
async def lifespan(app):
    """Runs `sweep_app` every SWEEP_EVERY_S seconds while the server runs (a FastAPI lifespan for Gradio), and
    `steady_malloc` once at the start.

    The settings are read once, when the server starts: each app in a process keeps its own.
    """
    steady_malloc()
    blocks = app.get_blocks()
    folders = [Path(blocks.GRADIO_CACHE), *output_folders()]
    every, max_bytes, min_age = SWEEP_EVERY_S, cache_cap_bytes(), MIN_AGE_S

    async def loop():
        while True:
            await asyncio.sleep(every)
            try:
                await asyncio.to_thread(sweep_app, blocks, folders, max_bytes, min_age)
            except Exception:  # housekeeping must never stop the server; the next sweep tries again
                log.exception("cache sweep failed")

    task = asyncio.create_task(loop())
    try:
        yield
    finally:
        task.cancel()
