"""deploy/gateway/Dockerfile: the gateway image installs the project's wheel with only the `gateway`
extra. No Docker engine runs here, so the test checks the Dockerfile's instructions and then runs the
gateway with every package the image does not ship made unimportable (torch, onnxruntime, ...) and
with the builder's and serving's code beyond their command registration blocked too.
tests/core/test_packaging.py installs the same wheel the same way into a fresh virtualenv."""

from __future__ import annotations

import json
import re
import subprocess

from tests.deploy.conftest import DEPLOY, REPO
from tests.deploy.image_imports import run_without

DOCKERFILE = DEPLOY / "gateway" / "Dockerfile"
# Matched as dotted prefixes: "tritium.serving" blocks every module under it.
NOT_IN_IMAGE = (
    "torch",
    "onnx",
    "onnxruntime",
    "onnxscript",
    "sklearn",
    "transformers",
    "matplotlib",
    "pytriton",
    "docker",
    "tritium.serving",
    "tritium.builder",
)
# The gateway image ships the whole wheel, so `tritium --help` registers every command: only the
# packages' __init__ and their cli modules (typer and rich, nothing else; `tune`'s option enums) may load.
ALLOWED = (
    "tritium.serving",
    "tritium.serving.cli",
    "tritium.serving.tuning",
    "tritium.serving.tuning.cli",
    "tritium.serving.tuning.options",
    "tritium.builder",
    "tritium.builder.cli",
)


def _instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def _copied_sources() -> set[str]:
    return {
        source
        for op, args in _instructions()
        if op == "COPY" and not args.startswith("--from")
        for source in args.split()[:-1]
    }


def _run_without_heavy_packages(body: str) -> subprocess.CompletedProcess[str]:
    return run_without(body, blocked=NOT_IN_IMAGE, allowed=ALLOWED, image="gateway")


def test_dockerfile_installs_the_wheel_with_only_the_gateway_extra() -> None:
    instructions = _instructions()
    runs = [args for op, args in instructions if op == "RUN"]
    assert any(re.search(r"pip wheel --no-deps --wheel-dir /dist \.$", run) for run in runs), runs
    installs = [run for run in runs if "pip install" in run]
    assert installs and all(
        re.search(r'pip install "\$\(ls /dist/tritium-\*\.whl\)\[gateway\]"', run) for run in installs
    )
    assert not any("torch" in run for run in runs)
    sources = _copied_sources()
    # The wheel is built from exactly the packaged folders (pyproject's package-dir) and nothing else.
    assert sources == {"pyproject.toml", "README.md", "core", "builder", "serving", "gateway", "release"}
    assert all((REPO / source).exists() for source in sources), sources


def test_dockerfile_runs_as_non_root_with_a_healthcheck() -> None:
    instructions = _instructions()
    users = [args for op, args in instructions if op == "USER"]
    assert users and users[-1] not in {"root", "0"}
    healthcheck = next(args for op, args in instructions if op == "HEALTHCHECK")
    assert "/v2/health/live" in healthcheck
    cmd = next(args for op, args in reversed(instructions) if op == "CMD")
    assert json.loads(cmd) == ["tritium", "gateway"]
    assert ("EXPOSE", "8080 8081") in instructions


def test_dockerignore_sends_only_what_the_image_copies() -> None:
    ignore = (DEPLOY / "gateway" / "Dockerfile.dockerignore").read_text().split()
    assert ignore[ignore.index("*") :][:1] == ["*"]
    allowed = {line[1:] for line in ignore if line.startswith("!")}
    assert _copied_sources() <= allowed


def test_gateway_app_and_health_work_without_torch(tmp_path) -> None:
    body = f"""
from fastapi.testclient import TestClient
from tritium.gateway.app import create_app
from tritium.gateway.settings import load_settings
settings = load_settings(route_file={str(tmp_path / "routes.yaml")!r}, grpc_port=None, triton_http_url="127.0.0.1:9")
with TestClient(create_app(settings)) as client:
    live = client.get("/v2/health/live")
    metrics = client.get("/metrics")
print(live.status_code, "tritium_gateway_in_flight_requests" in metrics.text)
"""
    result = _run_without_heavy_packages(body)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split()[-2:] == ["200", "True"]


def test_blocked_imports_really_fail() -> None:
    for module in ("torch", "tritium.serving.local", "tritium.builder.pipeline"):
        result = _run_without_heavy_packages(f"import {module}")
        assert result.returncode != 0 and "not in the gateway image" in result.stderr, module
    result = _run_without_heavy_packages("import tritium.serving.cli, tritium.builder.cli")
    assert result.returncode == 0, result.stderr[-2000:]


def test_image_command_runs_without_torch() -> None:
    """The image's CMD, `tritium gateway`, resolves with only the image's packages."""
    body = """
from tritium.cli import main
raise SystemExit(main(["gateway", "--help"]))
"""
    result = _run_without_heavy_packages(body)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "--triton-grpc" in result.stdout
