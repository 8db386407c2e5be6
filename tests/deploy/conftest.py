"""Paths and tool fixtures for the deploy/ tests (Prometheus, Grafana, Kubernetes, compose, image)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
PROMETHEUS_DIR = DEPLOY / "prometheus"
GRAFANA_DIR = DEPLOY / "grafana"
K8S_DIR = DEPLOY / "k8s"


def _tool(name: str, why: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(
            f"{name} is not installed ({why}); install Debian's 'prometheus' package or run scripts/bootstrap.sh"
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
