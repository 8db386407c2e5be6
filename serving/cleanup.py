"""Leave nothing behind: the Python-backend stubs of a Triton and their shared-memory regions.

Triton starts one ``triton_python_backend_stub`` per model instance and shares
``/dev/shm/triton_python_backend_shm_region_*`` with it. A clean SIGTERM removes both; after a
forced kill we remove what *our* process group had mapped, never another server's.
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

SHM_DIR = Path("/dev/shm")
SHM_PREFIX = "triton_python_backend_shm_region"
STUB_NAME = "triton_python_backend_stub"
_PROC = Path("/proc")


def group_pids(pgid: int) -> list[int]:
    """Live processes in process group ``pgid`` (Triton runs as the leader of its own group)."""
    pids = []
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if os.getpgid(int(entry.name)) == pgid and not _is_zombie(entry):
                pids.append(int(entry.name))
    return pids


def _is_zombie(proc_dir: Path) -> bool:
    try:
        stat = (proc_dir / "stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def shm_regions_of(pids: list[int]) -> set[Path]:
    """The Python-backend shared-memory files the processes ``pids`` have mapped."""
    regions: set[Path] = set()
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in (_PROC / str(pid) / "maps").read_text().splitlines():
                path = line.split(maxsplit=5)[-1] if line.count(" ") >= 5 else ""
                if path.startswith(f"{SHM_DIR}/{SHM_PREFIX}"):
                    regions.add(Path(path.removesuffix(" (deleted)")))
    return regions


def kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def remove_regions(regions: set[Path]) -> None:
    for region in regions:
        region.unlink(missing_ok=True)


def stub_pids(pgid: int) -> list[int]:
    result = []
    for pid in group_pids(pgid):
        with contextlib.suppress(OSError):
            if (_PROC / str(pid) / "comm").read_text().strip().startswith(STUB_NAME[:15]):
                result.append(pid)
    return result
