"""A bounded cache of view results, so that a lecture hall pressing the same button at once runs the model once.

Thirty students asking for the same default view within seconds is the common case of a lecture: each request
used to run its own forward pass and build its own figures, and the burst took 2-3x as long as a request that
runs no model. Here a view's result is kept under a key made of the handler, the identity of the loaded model
(a serial number per load, so a reloaded or evicted model never answers for another) and every input the
handler receives (picture files by their content). Identical requests arriving together wait for the first one
to finish instead of computing their own copy.

What may be cached: results of pure functions of those inputs only. Every handler wrapped here is
deterministic: sampling views run with a seed (the page always sends one), and a request that samples without a
seed is never cached (`unseeded_sampling`), though the tabs would read a cleared seed as 0. Per-session state that a
handler takes as input (a step history) is part of the key, so two sessions share a result only when they
asked exactly the same thing; a returned dict or list is copied for every request, so no session can change
what another one receives.

Figures are stored already serialized (Gradio's own `PlotData`, what `gr.Plot` turns a plotly figure into), so
that a hit also skips the JSON encoding of the figure: the cheaper request path. The cache is bounded by the
bytes of what it holds (`PLAYGROUND_RESULT_CACHE_MB`), least recently used first.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import inspect
import itertools
import json
import os
import sys
import tempfile
import threading
import weakref
from collections import OrderedDict
from pathlib import Path
from typing import Callable

import numpy as np

from .housekeeping import whole_number_setting

RESULT_CACHE_MB = 64
_MISSING = object()


class ResultCache:
    """Values up to `max_bytes` in all, least recently used dropped first; one computation per key at a time.

    Thread-safe: Gradio runs handlers in worker threads. A value larger than the whole budget is returned but
    not kept. An exception is never cached: every waiter then computes for itself.
    """

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._entries: OrderedDict[object, tuple[object, int]] = OrderedDict()
        self._bytes = 0
        self._computing: dict[object, threading.Event] = {}
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    @property
    def cached_bytes(self) -> int:
        with self._lock:
            return self._bytes

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    def forget(self, key) -> None:
        with self._lock:
            if key in self._entries:
                self._bytes -= self._entries.pop(key)[1]

    def get_or_compute(self, key, compute: Callable[[], object], size: Callable[[object], int]):
        """The value stored under `key`, or `compute()`'s, stored when it fits; `size(value)` is its bytes."""
        while True:
            with self._lock:
                if key in self._entries:
                    self._entries.move_to_end(key)
                    self.hits += 1
                    return self._entries[key][0]
                running = self._computing.get(key)
                if running is None:
                    running = self._computing[key] = threading.Event()
                    self.misses += 1
                    break
            running.wait()  # the same request is being computed: its result will be here, or it failed
            with self._lock:
                if key not in self._entries:  # failed, or too large to keep: compute alone, without waiting again
                    self.misses += 1
                    break
        try:
            value = compute()
            self._store(key, value, size(value))
            return value
        finally:
            with self._lock:
                if self._computing.get(key) is running:
                    del self._computing[key]
            running.set()

    def _store(self, key, value, nbytes: int) -> None:
        with self._lock:
            if nbytes > self.max_bytes:
                return
            if key in self._entries:
                self._bytes -= self._entries.pop(key)[1]
            self._entries[key] = (value, nbytes)
            self._bytes += nbytes
            while self._bytes > self.max_bytes:
                _, (_, dropped) = self._entries.popitem(last=False)
                self._bytes -= dropped


RESULTS = ResultCache(whole_number_setting("PLAYGROUND_RESULT_CACHE_MB", RESULT_CACHE_MB) * 1_000_000)

# Each loaded model gets a serial number: the key names the load, not the memory address (which a later model can
# reuse after the first is evicted) nor the name (a preset may fall back to another model while offline). The
# table holds models weakly: an evicted model is not kept alive by it.
_serials = itertools.count(1)
_model_serials: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_serial_lock = threading.Lock()


def model_serial(model) -> int:
    """A number unique to this loaded model object for the life of the process."""
    with _serial_lock:
        serial = _model_serials.get(model)
        if serial is None:
            serial = _model_serials[model] = next(_serials)
        return serial


MAX_HASHED_FILE_BYTES = 64 * 1024 * 1024


def file_roots() -> list[Path]:
    """Folders whose files arrive as inputs: Gradio's uploads and the app's example pictures."""
    uploads = os.environ.get("GRADIO_TEMP_DIR") or str(Path(tempfile.gettempdir()) / "gradio")
    return [Path(uploads).resolve(), (Path(__file__).resolve().parent.parent / "assets").resolve()]


def uploaded_file(value: str) -> Path | None:
    """The file an input string names when it is an upload or an example picture, else None: any other string,
    a path typed as text included, is keyed as text and never read."""
    if len(value) > 4096 or "\n" in value or not value.startswith("/"):
        return None
    path = Path(value).resolve()
    inside = any(path.is_relative_to(root) for root in file_roots())
    if inside and path.is_file() and path.stat().st_size <= MAX_HASHED_FILE_BYTES:
        return path
    return None


def input_key(value):
    """A hashable stand-in for one input: the value itself for plain data, the content hash for a file."""
    if value is None or isinstance(value, (bool, int, float)):
        return (type(value).__name__, value)
    if isinstance(value, str):
        path = uploaded_file(value)
        if path is not None:
            return ("file", hashlib.blake2b(path.read_bytes(), digest_size=20).hexdigest())
        return ("str", value)
    if isinstance(value, np.ndarray):
        return ("array", value.dtype.str, value.shape, hashlib.blake2b(value.tobytes(), digest_size=20).hexdigest())
    if isinstance(value, dict):
        return ("dict", tuple(sorted((str(k), input_key(v)) for k, v in value.items())))
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, tuple(input_key(v) for v in value))
    # Anything else (a PIL picture, a pandas table) by its JSON or repr text: an unknown type never aliases a
    # different value silently, at worst it misses.
    try:
        return (type(value).__name__, json.dumps(value, sort_keys=True, default=repr))
    except (TypeError, ValueError):
        return (type(value).__name__, repr(value))


def nbytes_of(value) -> int:
    """About how many bytes a cached result holds (figures by their JSON text)."""
    plot = getattr(value, "plot", None)
    if isinstance(plot, str):
        return len(plot) + 200
    if isinstance(value, str):
        return len(value.encode("utf-8", "ignore")) + 50
    if isinstance(value, np.ndarray):
        return value.nbytes + 100
    if isinstance(value, dict):
        return sum(nbytes_of(k) + nbytes_of(v) for k, v in value.items()) + 100
    if isinstance(value, (list, tuple)):
        return sum(nbytes_of(v) for v in value) + 50
    if hasattr(value, "memory_usage"):  # a pandas table
        return int(value.memory_usage(deep=True).sum()) + 200
    if hasattr(value, "size") and hasattr(value, "mode"):  # a PIL picture
        width, height = value.size
        return width * height * max(1, len(value.getbands())) + 200
    return sys.getsizeof(value)


def serialized(value):
    """A plotly figure as Gradio would send it (`PlotData`), so that a hit skips the figure's JSON encoding."""
    if type(value).__module__.startswith("plotly"):
        from gradio.components.plot import PlotData

        return PlotData(type="plotly", plot=value.to_json())
    return value


def _fresh(value):
    """What one request receives: its own copy of any mutable container (a step history the next step edits)."""
    return copy.deepcopy(value) if isinstance(value, (dict, list)) else value


def _files_present(outputs) -> bool:
    """False when a file a cached result names was deleted since (the disk budget's sweep): compute again."""
    for value in outputs:
        if isinstance(value, str) and value.startswith("/") and len(value) < 4096 and "\n" not in value:
            if value.endswith((".json", ".png", ".jpg", ".webp")) and not Path(value).is_file():
                return False
    return True


def unseeded_sampling(arguments: dict) -> bool:
    """True for a request that samples (temperature above 0, not greedy) with no seed given: its result is a
    draw, not a function of the inputs, and must be drawn again for every request."""
    if "seed" not in arguments or arguments["seed"] not in (None, ""):
        return False
    try:
        temperature = float(arguments.get("temperature") or 0)
    except (TypeError, ValueError):
        return True  # cannot tell: do not reuse
    return temperature > 0 and not arguments.get("greedy")


def cached_view(function, model_of: Callable[[dict], object], skip: Callable[[dict], bool] = unseeded_sampling,
                cache: ResultCache | None = None):
    """`function` answering from `cache` (RESULTS) for repeated identical inputs on the same loaded model.

    `model_of(arguments)` returns the loaded model the request will use (the process-wide model cache answers
    it at once), or a tuple of them for a view that runs several (the Compare tab), raises the message for one
    that cannot load, or returns None for inputs that `function` will refuse with its own message (it then runs
    uncached). `skip(arguments)`
    returns True for requests whose result must not be reused (by default: sampling without a seed).
    """
    signature = inspect.signature(function)
    target = cache if cache is not None else RESULTS

    @functools.wraps(function)
    def answer(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        arguments = dict(bound.arguments)
        if skip(arguments):
            return function(*args, **kwargs)
        model = model_of(arguments)  # a model that cannot load raises its message here, as the handler would
        if model is None or (isinstance(model, tuple) and None in model):  # inputs the handler will refuse
            return function(*args, **kwargs)
        serials = tuple(model_serial(m) for m in model) if isinstance(model, tuple) else model_serial(model)
        key = (function.__module__, function.__qualname__, serials,
               tuple((name, input_key(value)) for name, value in arguments.items()))

        def compute():
            result = function(*args, **kwargs)
            return tuple(serialized(v) for v in result) if isinstance(result, tuple) else serialized(result)

        def size(result) -> int:
            return nbytes_of(result)

        for _ in range(2):
            result = target.get_or_compute(key, compute, size)
            outputs = result if isinstance(result, tuple) else (result,)
            if _files_present(outputs):
                break
            target.forget(key)  # a file of the stored result is gone: compute once more
        if isinstance(result, tuple):
            return tuple(_fresh(v) for v in result)
        return _fresh(result)

    return answer
