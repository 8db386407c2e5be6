"""Facts about other processes on this machine."""

from __future__ import annotations

import os


def process_alive(pid: int) -> bool:
    """Whether a process with this PID exists (also one owned by another user)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
