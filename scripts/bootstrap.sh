#!/usr/bin/env bash
# Set up a fresh machine (Python 3.11, no GPU, no Docker) for Tritium: a virtualenv with the CPU
# build of torch, the project with every extra, Debian's Prometheus binaries for the
# observability tests and the h2load/wrk load generators. Safe on your own machine: everything goes into .venv/, and it
# starts no service and ends no process (see scripts/install-prometheus.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
# The CPU build first: any other torch spec would pull a multi-GB CUDA build.
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[all,dev]"

# Real Prometheus + promtool for the monitoring tests: only the two binaries from Debian's package,
# into .venv/bin. Nothing is installed system-wide and no service is started or stopped (why:
# scripts/install-prometheus.sh). A Prometheus already on PATH is used as it is.
if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
  :
elif [ -x .venv/bin/prometheus ] && [ -x .venv/bin/promtool ]; then
  :
elif ! scripts/install-prometheus.sh .venv/bin; then
  echo "warning: could not get Debian's prometheus binaries; the monitoring tests will be skipped" >&2
fi
# The C load generators `tritium tune`, its tests and the benchmarks drive Triton with (h2load, wrk):
# unpacked from Debian's packages into .venv the same way, unless already on PATH.
if ! scripts/install-load-generators.sh .venv/bin; then
  echo "warning: could not get h2load/wrk; the tune tests will be skipped" >&2
fi
echo "ready: .venv ($(.venv/bin/python -c 'import torch; print("torch", torch.__version__)'))"
