"""The numbers behind a figure, as a small JSON file the user can download.

Files go to one folder per process, and the oldest are removed beyond `KEEP`, so a long lecture or a public
demo does not fill the disk; app.housekeeping also counts the folder in the app's disk budget.

Every view writes its file with its result, so writing must cost little next to the view: orjson (Gradio's own
JSON library) writes numpy arrays directly, where the json module took 0.1 s of a 512-token BERT view.
Numbers that JSON cannot hold (NaN, infinity) are written as null.
"""

from __future__ import annotations

import re
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import orjson

KEEP = 200
# Arrays as lists, keys that are numbers as strings (as the json module wrote them), indented to be read.
EXPORT_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS | orjson.OPT_INDENT_2
EXPORTS_DIR = Path(tempfile.mkdtemp(prefix="playground-exports-"))
_lock = threading.Lock()


def _plain(value):
    """What orjson does not write itself: arrays that are not contiguous, numpy scalars, torch tensors."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if hasattr(value, "tolist"):  # torch tensors
        return value.tolist()
    raise TypeError(f"cannot export {type(value).__name__}")


def _age_key(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:  # deleted meanwhile by the size sweep (app.housekeeping)
        return 0.0


def json_file(data: dict, stem: str) -> str:
    """Write `data` as JSON and return the path; `stem` names the view (letters, digits, dashes)."""
    safe = re.sub(r"[^A-Za-z0-9-]+", "-", stem)[:40] or "data"
    with _lock:
        path = EXPORTS_DIR / f"{safe}-{time.time_ns()}.json"
        path.write_bytes(orjson.dumps(data, default=_plain, option=EXPORT_OPTIONS))
        files = sorted(EXPORTS_DIR.glob("*.json"), key=_age_key)
        for old in files[:-KEEP]:
            old.unlink(missing_ok=True)
    return str(path)
