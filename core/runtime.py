"""Process-wide runtime settings: torch's thread count follows the CPU quota of the container, and small
one-row products run on the calling thread alone.

On a 2-vCPU Space, `os.cpu_count()` reports the host's cores; oversubscribed threads then slow every
request. The cgroup quota (cpu.max) says how many cores the process may really use.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import torch

log = logging.getLogger(__name__)


def cpu_quota() -> int:
    """Cores this process may use: the cgroup v2/v1 quota if one is set, else the affinity mask."""
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            return max(1, min(available, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    try:
        quota = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        period = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
        if quota > 0:
            return max(1, min(available, math.ceil(quota / period)))
    except (OSError, ValueError):
        pass
    return max(1, available)


# Every parallel region of an op (one per matrix product, even a small one) has to wake the other OpenMP
# threads. Under OMP_WAIT_POLICY=PASSIVE, the app's, they sleep between regions, and waking one costs about
# 0.1 ms on the 2-vCPU machines this was measured on: as long as reading a megabyte or two. There a one-row
# product of a decoding step reading less than this many bytes is faster on the calling thread alone (per
# product, a few small ops between products as in a layer, two threads against one: 0.5 MB 89 vs 37 us,
# 1.5 MB 149 vs 105, 2 MB 166 vs 140, 3 MB 185 vs 206, 4 MB 220 vs 293, 8 MB 393 vs 696).
# Spinning threads (torch's default policy) wake at once and win at every size: there nothing moves to one
# thread. (GOMP_SPINCOUNT, when set, makes threads spin that long before sleeping, whatever the policy says.)
_SLEEPING_THREADS = (os.environ.get("OMP_WAIT_POLICY", "").upper() == "PASSIVE"
                     and os.environ.get("GOMP_SPINCOUNT", "0").strip() in ("", "0"))
ONE_THREAD_BELOW_BYTES = 5 << 19 if _SLEEPING_THREADS else 0  # 2.5 MiB

_configured_threads: int | None = None


def configure_threads() -> int:
    global _configured_threads
    threads = _configured_threads = cpu_quota()
    torch.set_num_threads(threads)
    log.info("torch uses %d threads", threads)
    return threads


class one_thread:
    """Run the ops inside on the calling thread only (see ONE_THREAD_BELOW_BYTES).

    torch's count is per thread once a thread has run an op, but a thread's first op copies the process-wide
    one, which this briefly lowers: `restore_threads` undoes that for a thread that started meanwhile.
    A class rather than a generator-based context manager: a decoding step enters one a hundred times.
    """

    __slots__ = ("threads",)

    def __enter__(self):
        self.threads = torch.get_num_threads()
        if self.threads != 1:
            torch.set_num_threads(1)

    def __exit__(self, *exception):
        if self.threads != 1:
            torch.set_num_threads(self.threads)


def restore_threads() -> None:
    """Give this thread the count `configure_threads` chose, if it began inside another thread's `one_thread`."""
    if _configured_threads is not None and torch.get_num_threads() != _configured_threads:
        torch.set_num_threads(_configured_threads)
