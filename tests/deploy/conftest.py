"""Paths and tool fixtures for the deploy/ tests (Prometheus, Grafana, Kubernetes, compose, image)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
PROMETHEUS_DIR = DEPLOY / "prometheus"
GRAFANA_DIR = DEPLOY / "grafana"
K8S_DIR = DEPLOY / "k8s"


def _tool(name: str, why: str) -> str:
    # scripts/bootstrap.sh puts Debian's prometheus/promtool binaries beside the venv's python
    # (nothing system-wide); a venv that is not activated has that folder off PATH.
    beside_python = Path(sys.executable).parent / name
    path = str(beside_python) if os.access(beside_python, os.X_OK) else shutil.which(name)
    if path is None:
        pytest.skip(
            f"{name} is not installed ({why}); run scripts/bootstrap.sh (or scripts/install-prometheus.sh .venv/bin)"
        )
    return path


@pytest.fixture(scope="session")
def promtool() -> str:
    return _tool("promtool", "checks and unit-tests the rules")


@pytest.fixture(scope="session")
def prometheus_binary() -> str:
    return _tool("prometheus", "the live dashboard test runs a real Prometheus")


@pytest.fixture(scope="session")
def kubectl() -> str:
    path = shutil.which("kubectl")
    if path is None:
        pytest.skip("kubectl is not installed: it builds the kustomize overlays (`kubectl kustomize`)")
    return path
