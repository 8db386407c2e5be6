"""benchmarks/gpu_check.py runs anywhere: on a CPU machine its CUDA rows say why they were skipped;
on a GPU machine (marked ``gpu``) every CUDA row must run and agree with the CPU export."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.py"


def _run(tmp_path: Path) -> subprocess.CompletedProcess:
    # from a foreign folder: the script needs nothing from the repository
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--batch", "2", "--sequence", "8", "--rounds", "1"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip


@pytest.mark.slow
def test_on_this_machine_it_prints_one_table_and_agrees(tmp_path):
    import torch

    done = _run(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    table = [line for line in done.stdout.splitlines() if line.startswith("|")]
    assert any("TorchScript FP32" in line and "| cpu " in line for line in table)
    if not torch.cuda.is_available():
        assert any("skipped: torch.cuda.is_available() is False" in line for line in table)


@pytest.mark.gpu
@pytest.mark.skipif(
    not __import__("torch").cuda.is_available(), reason="needs a CUDA GPU: run benchmarks/gpu_check.py there"
)
def test_on_a_gpu_every_cuda_row_runs(tmp_path):
    done = _run(tmp_path)
    assert done.returncode == 0, done.stdout
    assert "torch FP16 autocast" in done.stdout and "failed" not in done.stdout
