"""`tritium gateway` and `tritium routes ...` as a user runs them (real processes, real servers)."""

import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest
import yaml

from tests.gateway.ab_routes import CANARY_READY_ROUTES, ECHO_BODY

ROUTES = CANARY_READY_ROUTES
BODY = ECHO_BODY


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tritium(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tritium.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
    )


@pytest.fixture
def gw(gateway_factory, tmp_path):
    (tmp_path / "routes.yaml").write_text(yaml.safe_dump(ROUTES))
    return gateway_factory()


def test_routes_commands_drive_the_admin_api(gw, tmp_path):
    env = {"TRITIUM_GATEWAY_URL": gw.url, "TRITIUM_GATEWAY_ADMIN_TOKEN": "test-admin-token"}
    listed = tritium("routes", "list", env=env)
    assert listed.returncode == 0, listed.stderr
    assert "echo" in listed.stdout and "stable=echo:1 100%" in listed.stdout

    changed = tritium("routes", "set-weights", "echo", "stable=70", "canary=30", env=env)
    assert changed.returncode == 0, changed.stderr
    assert (
        yaml.safe_load((tmp_path / "routes.yaml").read_text())["routes"]["echo"]["targets"][1]["weight"] == 30
    )

    started = tritium("routes", "canary", "start", "echo", "--steps", "10,100", "--window", "600", env=env)
    assert started.returncode == 0 and "progressing at 10%" in started.stdout, started.stdout + started.stderr
    rolled = tritium("routes", "canary", "rollback", "echo", "--reason", "cli test", env=env)
    assert rolled.returncode == 0 and "rolled_back at 0%" in rolled.stdout
    assert "cli test" in tritium("routes", "show", "echo", env=env).stdout
    audit = tritium("routes", "audit", env=env)
    assert "canary-rollback" in audit.stdout

    bad = tritium("routes", "set-weights", "echo", "stable=70", env=env)
    assert bad.returncode == 2 and "add up to 100" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    denied = tritium("routes", "list", env={**env, "TRITIUM_GATEWAY_ADMIN_TOKEN": "wrong"})
    assert denied.returncode == 2 and "admin token is not valid" in denied.stderr


def test_gateway_command_serves_and_rejects_a_bad_route_file(triton, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("routes: {echo: {targets: [{alias: stable, model: echo, weight: 30}]}}")
    failed = tritium("gateway", "--routes", str(bad), "--port", str(free_port()))
    assert failed.returncode == 2 and "add up to 100" in failed.stderr

    routes = tmp_path / "routes.yaml"
    routes.write_text(yaml.safe_dump(ROUTES))
    port, grpc_port = free_port(), free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tritium.cli",
            "gateway",
            "--routes",
            str(routes),
            "--port",
            str(port),
            "--grpc-port",
            str(grpc_port),
            "--triton-http",
            triton.http_url,
            "--triton-grpc",
            triton.grpc_url,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                answer = httpx.post(f"http://127.0.0.1:{port}/v2/models/echo/infer", json=BODY)
                break
            except httpx.HTTPError:
                assert process.poll() is None and time.monotonic() < deadline, "gateway did not start"
                time.sleep(0.2)
        assert answer.status_code == 200 and answer.headers["x-tritium-variant"] == "stable"
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    # uvicorn shuts down gracefully, then re-raises the SIGTERM it caught
    assert process.returncode in (0, -signal.SIGTERM), output
    assert "Application shutdown complete" in output
    assert f"gRPC 127.0.0.1:{grpc_port}" in output


def test_gateway_command_with_a_taken_grpc_port_fails_in_one_line(triton, tmp_path):
    routes = tmp_path / "routes.yaml"
    routes.write_text(yaml.safe_dump(ROUTES))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        grpc_port = taken.getsockname()[1]
        failed = tritium(
            "gateway",
            "--routes",
            str(routes),
            "--port",
            str(free_port()),
            "--grpc-port",
            str(grpc_port),
            "--triton-http",
            triton.http_url,
            "--triton-grpc",
            triton.grpc_url,
        )
    output = failed.stdout + failed.stderr
    assert failed.returncode == 6, output  # UnavailableError
    assert "Traceback" not in output
    errors = [line for line in failed.stderr.splitlines() if f"127.0.0.1:{grpc_port}" in line]
    assert len(errors) == 1 and "cannot serve gRPC" in errors[0] and "--grpc-port" in errors[0], output
