"""Process-wide runtime settings: torch's thread count follows the CPU quota of the container.

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


def configure_threads() -> int:
    threads = cpu_quota()
    torch.set_num_threads(threads)
    log.info("torch uses %d threads", threads)
    return threads
