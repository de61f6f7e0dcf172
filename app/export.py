"""The numbers behind a figure, as a small JSON file the user can download.

Files go to one folder per process, and the oldest are removed beyond `KEEP`, so a long lecture or a public
demo does not fill the disk; app.housekeeping also counts the folder in the app's disk budget.
"""

from __future__ import annotations

import json
import re
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

KEEP = 200
EXPORTS_DIR = Path(tempfile.mkdtemp(prefix="playground-exports-"))
_lock = threading.Lock()


def _plain(value):
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
        path.write_text(json.dumps(data, default=_plain, indent=1, ensure_ascii=False))
        files = sorted(EXPORTS_DIR.glob("*.json"), key=_age_key)
        for old in files[:-KEEP]:
            old.unlink(missing_ok=True)
    return str(path)
