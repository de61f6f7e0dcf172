"""Uploads and result files are bounded by total size: the oldest go first, the page's own files never."""

from __future__ import annotations

import os
import time
from pathlib import Path

from app import housekeeping
from app.housekeeping import sweep
from tests.conftest import _free_port

HOUR = 3600.0


def write(path, size: int):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    time.sleep(0.01)  # distinct creation times, oldest first
    return path


def folder_bytes(folder) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def test_sweep_deletes_the_oldest_files_until_under_the_cap(tmp_path):
    files = [write(tmp_path / f"{i:064x}" / "upload.png", 1000) for i in range(10)]
    result = sweep([tmp_path], max_bytes=4500, now=time.time() + HOUR)
    assert result.total_bytes == 4000 == folder_bytes(tmp_path)
    assert [p.exists() for p in files] == [False] * 6 + [True] * 4  # the six oldest went
    assert sorted(result.deleted) == sorted(str(p) for p in files[:6])


def test_over_the_cap_a_sweep_makes_room_down_to_the_low_water_mark(tmp_path):
    files = [write(tmp_path / f"f{i}.json", 1000) for i in range(10)]
    later = time.time() + HOUR
    assert sweep([tmp_path], max_bytes=9500, down_to=7000, now=later).total_bytes == 7000
    assert [p.exists() for p in files] == [False] * 3 + [True] * 7
    # Under the cap nothing is deleted, however far above the low-water mark.
    assert sweep([tmp_path], max_bytes=9500, down_to=1000, now=later).deleted == ()


def test_sweep_leaves_a_folder_under_the_cap_alone(tmp_path):
    files = [write(tmp_path / f"f{i}.json", 1000) for i in range(3)]
    assert sweep([tmp_path], max_bytes=3000, now=time.time() + HOUR).deleted == ()
    assert all(p.exists() for p in files)


def test_kept_and_young_files_are_never_deleted(tmp_path):
    default = write(tmp_path / "a" / "photo-chelsea-cat.jpg", 5000)  # a component default, the oldest file
    old = write(tmp_path / "b" / "old.png", 1000)
    young = write(tmp_path / "c" / "young.png", 1000)
    now = young.stat().st_ctime + 30  # `young` is 30 s old, `old` a little older
    result = sweep([tmp_path], max_bytes=0, keep=[str(default)], min_age=30.005, now=now)
    assert default.exists() and young.exists() and not old.exists()
    assert result.total_bytes == 6000  # still above the cap: what is left may not be deleted yet


def test_a_file_handed_out_again_after_the_listing_is_spared(tmp_path, monkeypatch):
    """Gradio touches a cached copy it hands out again; if that happens while a sweep runs, the sweep's listing
    still shows the old time, and the file must survive all the same."""
    old = write(tmp_path / "h1" / "old.png", 1000)
    reused = write(tmp_path / "h2" / "reused.png", 1000)
    time.sleep(0.3)  # both older than the sweep's minimum age below
    listed = housekeeping.list_files

    def listing_then_touch(folders):
        found = listed(folders)
        os.utime(reused)  # handed out again between the listing and the deletions
        return found

    monkeypatch.setattr(housekeeping, "list_files", listing_then_touch)
    result = sweep([tmp_path], max_bytes=0, min_age=0.2)
    assert not old.exists() and reused.exists()
    assert result.deleted == (str(old),) and result.total_bytes == 1000


def test_one_budget_across_folders(tmp_path):
    cache, pictures = tmp_path / "gradio", tmp_path / "pictures"
    a = write(cache / "h1" / "a.png", 1000)
    b = write(pictures / "b.png", 1000)
    c = write(cache / "h2" / "c.png", 1000)
    sweep([cache, pictures, tmp_path / "missing"], max_bytes=1500, now=time.time() + HOUR)
    assert not a.exists() and not b.exists() and c.exists()


def test_links_are_not_followed_and_old_empty_hash_folders_go(tmp_path):
    outside = write(tmp_path / "outside" / "secret.txt", 5000)
    cache = tmp_path / "cache"
    (cache / "link-dir").mkdir(parents=True)
    os.symlink(outside, cache / "link-dir" / "secret.txt")
    emptied = write(cache / ("ab" * 32) / "old.png", 10).parent
    (cache / "vibe_edit_history").mkdir()  # an empty folder of Gradio's own, not a hash folder
    result = sweep([cache], max_bytes=0, now=time.time() + HOUR)
    assert outside.exists() and result.total_bytes == 0
    assert (cache / "link-dir" / "secret.txt").is_symlink()  # not a file of the cache: neither counted nor removed
    assert not emptied.exists() and (cache / "vibe_edit_history").is_dir() and cache.is_dir()


def test_cap_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv("PLAYGROUND_CACHE_MB", raising=False)
    assert housekeeping.cache_cap_bytes() == 200_000_000
    monkeypatch.setenv("PLAYGROUND_CACHE_MB", "5")
    assert housekeeping.cache_cap_bytes() == 5_000_000
    monkeypatch.setenv("PLAYGROUND_CACHE_MB", "lots")
    try:
        housekeeping.cache_cap_bytes()
    except ValueError as error:
        assert "PLAYGROUND_CACHE_MB" in str(error)
    else:
        raise AssertionError("a bad PLAYGROUND_CACHE_MB was accepted")


def test_a_running_app_sweeps_its_cache_and_keeps_the_page_files(tmp_path, monkeypatch):
    """The lifespan given in launch_options runs the sweep; the example pictures the page shows stay."""
    from gradio_client import Client

    from app.ui import build_demo, launch_options

    cache, outputs = tmp_path / "gradio", tmp_path / "outputs"
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(cache))
    monkeypatch.setenv("PLAYGROUND_CACHE_MB", "1")
    monkeypatch.setattr(housekeeping, "SWEEP_EVERY_S", 0.2)
    monkeypatch.setattr(housekeeping, "MIN_AGE_S", 0.5)
    monkeypatch.setattr(housekeeping, "output_folders", lambda: [outputs])
    demo = build_demo()
    page_files = set().union(*(getattr(block, "keep_in_cache", ()) for block in demo.blocks.values()))
    assert page_files and all(path.startswith(str(cache)) for path in page_files)
    port = _free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, **launch_options())
    try:
        Client(f"http://127.0.0.1:{port}/", verbose=False).predict(api_name="/bert_tokenize")  # a JSON download
        results = set().union(*demo.temp_file_sets) - page_files
        assert results, "the request left no file in Gradio's cache"
        junk = [write(outputs / f"junk-{i}.json", 500_000) for i in range(3)]  # newer than the results
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and junk[1].exists():
            time.sleep(0.1)
        left = sorted((str(p.relative_to(tmp_path)), p.stat().st_size) for p in tmp_path.rglob("*") if p.is_file())
        # Over 1 MB, oldest first down to 0.75 MB: the results, then two of the three junk files.
        assert [p.exists() for p in junk] == [False, False, True], left
        assert not any(os.path.exists(path) for path in results), left
        assert folder_bytes(cache) + folder_bytes(outputs) <= 750_000, left
        assert all(os.path.exists(path) for path in page_files)
        assert not results & set().union(*demo.temp_file_sets)  # Gradio no longer remembers them either
    finally:
        demo.close()


# Run in a fresh interpreter: in the long test process a free 512 KB chunk left in the heap by earlier tests
# can serve the request before glibc considers a memory map, whatever the threshold.
MMAP_CHECK = """
import ctypes, os, sys
os.environ.pop("MALLOC_MMAP_THRESHOLD_", None)
from app import housekeeping

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                      "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
block = bytearray(4 * 1024 * 1024)  # mapped on its own at first; freeing it lifts glibc's threshold to 4 MB
del block
assert housekeeping.steady_malloc()
before = libc.mallinfo2().hblks
block = bytearray(512 * 1024)
mapped = libc.mallinfo2().hblks - before
del block
print(mapped, libc.mallinfo2().hblks - before)
"""


def test_large_blocks_get_their_own_memory_maps():
    """After steady_malloc, a 512 KB block is mapped on its own (and so given back when freed)."""
    import platform
    import subprocess
    import sys

    assert platform.libc_ver()[0] == "glibc"  # the machines this app runs on; mallopt is glibc's
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_MMAP_THRESHOLD_"}
    out = subprocess.run([sys.executable, "-c", MMAP_CHECK], capture_output=True, text=True, check=True, env=env,
                         cwd=Path(__file__).resolve().parent.parent)
    assert out.stdout.split() == ["1", "0"], out.stdout + out.stderr
