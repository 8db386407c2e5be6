#!/usr/bin/env bash
# Set up a fresh machine (Python 3.11, no GPU, no Docker) for Tritium: a virtualenv with the CPU
# build of torch, the project with every extra, and Debian's Prometheus for the observability tests.
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

# Real Prometheus + promtool for the monitoring tests (root on CI machines; skipped elsewhere).
if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null) \
      || echo "warning: could not install Debian's prometheus; its tests will be skipped" >&2
    # The Debian package starts a system Prometheus on :9090; tests run their own on free ports.
    (service prometheus stop || pkill -x prometheus || true) >/dev/null 2>&1
  else
    echo "note: install Debian's 'prometheus' package to run the monitoring tests" >&2
  fi
fi
echo "ready: .venv ($(.venv/bin/python -c 'import torch; print("torch", torch.__version__)'))"
