"""The numbers behind a figure, as a small JSON file the user can download.

Files go to one folder per process, and the oldest are removed beyond `KEEP`, so a long lecture or a public
demo does not fill the disk.
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
_folder = Path(tempfile.mkdtemp(prefix="playground-exports-"))
_lock = threading.Lock()


def _plain(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if hasattr(value, "tolist"):  # torch tensors
        return value.tolist()
    raise TypeError(f"cannot export {type(value).__name__}")


def json_file(data: dict, stem: str) -> str:
    """Write `data` as JSON and return the path; `stem` names the view (letters, digits, dashes)."""
    safe = re.sub(r"[^A-Za-z0-9-]+", "-", stem)[:40] or "data"
    with _lock:
        path = _folder / f"{safe}-{time.time_ns()}.json"
        path.write_text(json.dumps(data, default=_plain, indent=1, ensure_ascii=False))
        files = sorted(_folder.glob("*.json"), key=lambda p: p.stat().st_mtime)
        for old in files[:-KEEP]:
            old.unlink(missing_ok=True)
    return str(path)
