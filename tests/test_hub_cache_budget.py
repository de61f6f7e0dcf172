"""The Hub cache the app writes stays within its byte budget: typed repo ids evict the least recently used
downloads, never a model in use; what cannot fit is refused before a byte arrives, with a message that names no
server path; a refused or broken-off download leaves no file behind; two downloads at once cannot both pass.

No network: the Hub is a fake that lists sizes and writes files into the cache layout; cached repositories are
sparse files, so a budget of megabytes holds them without using the disk.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import huggingface_hub.constants
import pytest

import app.models as models
import core.hub as hub
import core.hub_cache as hub_cache
from core import CheckpointError

TINY_GPT = models.EMBEDDED_DIR / "tiny-gpt"

MB = 1_000_000


@pytest.fixture
def cache(tmp_path, monkeypatch):
    root = tmp_path / "hub"
    root.mkdir()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(root))
    monkeypatch.setattr(hub_cache, "PROTECTORS", [])
    monkeypatch.setenv("PLAYGROUND_HUB_CACHE_MB", "10")
    return root


def cached_repo(root: Path, repo_id: str, commit: str, size: int, last_used: float, fetched_here: bool = True):
    """A repository in the cache layout (a blob, a snapshot linking to it, refs/main) whose weights take `size`
    bytes (sparse), last used at `last_used` (the snapshot folder's time)."""
    repo = root / f"models--{repo_id.replace('/', '--')}"
    blob = repo / "blobs" / f"{commit[:8]}blob"
    blob.parent.mkdir(parents=True)
    with open(blob, "wb") as file:
        file.truncate(size)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (snapshot / "model.safetensors").symlink_to(os.path.relpath(blob, snapshot))
    (snapshot / "config.json").write_text("{}")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    if fetched_here:
        (repo / hub_cache.MARKER).touch()
    os.utime(snapshot, (last_used, last_used))
    return repo


def commit_of(letter: str) -> str:
    return letter * 40


class FakeHub:
    """Several repositories as `core.hub` sees the Hub: listings with sizes, downloads written into the cache."""

    def __init__(self, monkeypatch, root: Path, repos: dict[str, dict[str, bytes | Path]], sizes=None):
        self.root, self.repos, self.fetched, self.sizes = root, repos, [], sizes or {}
        monkeypatch.setattr(hub, "hub_reachable", lambda timeout=2.0: True)
        monkeypatch.setattr(hub, "remote_files", self.remote_files)
        monkeypatch.setattr(hub, "_download", self.download)

    def remote_files(self, repo_id, revision=None):
        files = self.repos[repo_id]
        sizes = {name: len(data) if isinstance(data, bytes) else data.stat().st_size for name, data in files.items()}
        return commit_of("c"), sizes | self.sizes.get(repo_id, {})

    def download(self, repo_id, name, commit):
        self.fetched.append((repo_id, name))
        repo = self.root / f"models--{repo_id.replace('/', '--')}"
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / "main").write_text(commit_of("c"))
        target = repo / "snapshots" / commit_of("c") / name
        target.parent.mkdir(parents=True, exist_ok=True)
        data = self.repos[repo_id][name]
        target.write_bytes(data if isinstance(data, bytes) else data.read_bytes())
        return target


def test_a_download_evicts_the_least_recently_used_revisions_first(cache):
    oldest = cached_repo(cache, "someone/oldest", commit_of("1"), 3 * MB, last_used=1000)
    middle = cached_repo(cache, "someone/middle", commit_of("2"), 3 * MB, last_used=2000)
    newest = cached_repo(cache, "someone/newest", commit_of("3"), 3 * MB, last_used=3000)
    with hub_cache.room_for("someone/new", commit_of("4"), 3_900_000):  # 9 + 3.9 > 10: one of 3 MB must go
        pass
    assert not oldest.exists() and middle.exists() and newest.exists()
    with hub_cache.room_for("someone/new", commit_of("4"), 8 * MB):  # 6 + 8 > 10: both go
        pass
    assert not middle.exists() and not newest.exists()


def test_a_load_from_the_cache_makes_a_repository_the_most_recently_used(cache):
    oldest = cached_repo(cache, "someone/oldest", commit_of("1"), 3 * MB, last_used=1000)
    middle = cached_repo(cache, "someone/middle", commit_of("2"), 3 * MB, last_used=2000)
    hub.hub_folder("someone/oldest", hub.PLAN_FILES)  # offline, from the cache
    with hub_cache.room_for("someone/new", commit_of("3"), 6 * MB):  # 6 + 6 > 10: one goes
        pass
    assert oldest.exists() and not middle.exists()


def test_what_the_app_did_not_fetch_is_neither_counted_nor_deleted(cache):
    own = cached_repo(cache, "developer/own", commit_of("1"), 50 * MB, last_used=1000, fetched_here=False)
    with hub_cache.room_for("someone/new", commit_of("2"), 9 * MB):
        pass
    assert (own / "blobs").is_dir() and len(list((own / "snapshots").iterdir())) == 1


def test_models_in_use_are_never_evicted_and_a_download_that_cannot_fit_is_refused(cache):
    loaded = cached_repo(cache, "someone/loaded", commit_of("1"), 4 * MB, last_used=1000)
    idle = cached_repo(cache, "someone/idle", commit_of("2"), 4 * MB, last_used=2000)
    hub_cache.protect(lambda: ["someone/loaded"])
    with hub_cache.room_for("someone/new", commit_of("3"), 5 * MB):
        pass
    assert loaded.exists() and not idle.exists()
    with pytest.raises(hub_cache.CacheFull) as refused:
        with hub_cache.room_for("someone/huge", commit_of("4"), 7 * MB):  # 4 MB in use + 7 > 10
            pytest.fail("the download must not start")
    assert "'someone/huge'" in str(refused.value) and "PLAYGROUND_HUB_CACHE_MB" in str(refused.value)
    assert loaded.exists() and not (cache / "models--someone--huge").exists()


def test_a_revision_in_use_stays_while_another_of_the_same_repo_goes(cache):
    """A visitor cycling through a preset's training checkpoints (pythia@step...) cannot grow the cache."""
    repo = cached_repo(cache, "someone/pythia", commit_of("1"), 4 * MB, last_used=3000)
    step = repo / "snapshots" / commit_of("2")
    step.mkdir()
    blob = repo / "blobs" / "stepblob"
    with open(blob, "wb") as file:
        file.truncate(4 * MB)
    (step / "model.safetensors").symlink_to(os.path.relpath(blob, step))
    (repo / "refs" / "step1000").write_text(commit_of("2"))
    os.utime(step, (4000, 4000))  # used after main, yet not protected
    hub_cache.protect(lambda: ["someone/pythia"])  # main only
    with hub_cache.room_for("someone/pythia", commit_of("3"), 5 * MB):
        pass
    assert (repo / "snapshots" / commit_of("1")).is_dir() and not step.exists()
    assert not (repo / "refs" / "step1000").exists() and not blob.exists()


def tiny_gpt_files() -> dict[str, Path]:
    return {path.name: path for path in TINY_GPT.iterdir() if path.name != "training_replay.safetensors"}


def test_a_model_loaded_in_the_app_keeps_its_files_and_a_refused_one_leaves_none(cache, tmp_path, monkeypatch):
    files = tiny_gpt_files()
    fake = FakeHub(monkeypatch, cache, {"someone/loaded": files, "someone/big": files},
                   sizes={"someone/big": {"model.safetensors": 11 * MB}})
    # tiny-gpt's files take 3.7 MB: a 5 MB budget holds them, and not the 11 MB announced for "big".
    monkeypatch.setenv("PLAYGROUND_HUB_CACHE_MB", "5")
    model_cache = models.ModelCache()
    hub_cache.protect(model_cache.sources_in_use)
    model_cache.get("gpt", "", "someone/loaded")
    loaded = cache / "models--someone--loaded"
    assert (loaded / hub_cache.MARKER).is_file()
    with pytest.raises(CheckpointError) as refused:
        model_cache.get("gpt", "", "someone/big")
    message = str(refused.value)
    assert "'someone/big'" in message and "11 MB" in message and "PLAYGROUND_HUB_CACHE_MB" in message
    assert str(tmp_path) not in message and "/" + "tmp" not in message
    assert ("someone/big", "model.safetensors") not in fake.fetched
    assert not (cache / "models--someone--big").exists()  # its config.json went with the refusal
    # A third model that fits only without the loaded one is refused too: the loaded model's files stay.
    fake.repos["someone/third"] = files
    fake.sizes["someone/third"] = {"model.safetensors": 1_500_000}  # 3.7 + 1.5 > 5
    with pytest.raises(CheckpointError, match="No room for 'someone/third'"):
        model_cache.get("gpt", "", "someone/third")
    assert (loaded / "snapshots" / commit_of("c") / "model.safetensors").is_file()
    assert not (cache / "models--someone--third").exists()


def test_a_download_broken_off_leaves_no_partial_file(cache, monkeypatch):
    fake = FakeHub(monkeypatch, cache, {"someone/flaky": tiny_gpt_files()})
    written = fake.download

    def fail_on_weights(repo_id, name, commit):
        if name != "model.safetensors":
            return written(repo_id, name, commit)
        partial = cache / "models--someone--flaky" / "blobs" / "0123.incomplete"
        partial.parent.mkdir(parents=True, exist_ok=True)
        partial.write_bytes(b"half")
        raise CheckpointError("Cannot fetch model.safetensors of 'someone/flaky': ConnectionError")

    monkeypatch.setattr(hub, "_download", fail_on_weights)
    with pytest.raises(CheckpointError, match="ConnectionError"):
        models.ModelCache().get("gpt", "", "someone/flaky")
    assert not (cache / "models--someone--flaky").exists()


def test_two_downloads_at_once_cannot_both_pass_the_budget(cache):
    barrier, refused_seen = threading.Barrier(2), threading.Event()
    admitted, refused = [], []

    def download(repo_id):
        barrier.wait()
        try:
            with hub_cache.room_for(repo_id, commit_of("5"), 6 * MB):
                admitted.append(repo_id)
                refused_seen.wait(timeout=10)  # still downloading while the other asks
        except hub_cache.CacheFull:
            refused.append(repo_id)
            refused_seen.set()

    threads = [threading.Thread(target=download, args=(f"someone/model{i}",)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert len(admitted) == 1 and len(refused) == 1
    assert hub_cache._reservations == []  # both released
