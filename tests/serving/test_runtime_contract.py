"""Both runtimes implement TritonRuntime, and the CLI's code paths work against each.

The docker runtime talks to ``tests.serving.docker_engine``: the real docker SDK over a Unix socket to
an Engine API server whose containers run the bundled tritonserver (no Docker engine exists here).
"""

from __future__ import annotations

import ast
import inspect
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from tests.conftest import tiny_expected
from tritium.cli import main
from tritium.serving import cleanup
from tritium.serving.docker_runtime import DockerTriton
from tritium.serving.local import LocalTriton
from tritium.serving.runtime import TritonRuntime

SERVING = Path(__file__).resolve().parents[2] / "serving"
RUNTIMES = [LocalTriton, DockerTriton]


def protocol_members() -> dict[str, str]:
    """Every member of TritonRuntime: ``data``, ``property`` or ``method``."""
    members = {name: "data" for name in TritonRuntime.__annotations__}
    for name, value in vars(TritonRuntime).items():
        if isinstance(value, property):
            members[name] = "property"
        elif inspect.isfunction(value) and not name.startswith("_"):
            members[name] = "method"
    return members


def test_the_protocol_declares_what_the_cli_needs():
    members = protocol_members()
    assert {"start", "wait_ready", "is_running", "exit_status", "log_tail", "follow_log", "stop"} <= set(
        members
    )
    assert {"grpc_url", "http_url", "metrics_url", "skipped_models"} <= set(members)


@pytest.mark.parametrize("cls", RUNTIMES, ids=lambda c: c.__name__)
def test_each_runtime_is_a_triton_runtime(cls, tiny_repository):
    assert isinstance(cls(tiny_repository), TritonRuntime)


@pytest.mark.parametrize("cls", RUNTIMES, ids=lambda c: c.__name__)
def test_every_member_exists_with_the_protocols_signature(cls, tiny_repository):
    instance = cls(tiny_repository)
    for name, kind in protocol_members().items():
        if kind == "data":
            assert hasattr(instance, name), name
            continue
        implementation = inspect.getattr_static(cls, name)
        if kind == "property":
            assert isinstance(implementation, property), name
            continue
        expected = inspect.signature(getattr(TritonRuntime, name))
        actual = inspect.signature(getattr(cls, name))
        assert list(actual.parameters.values()) == list(expected.parameters.values()), name
        if name == "start":
            assert actual.return_annotation in (cls.__name__, "TritonRuntime")
        else:
            assert actual.return_annotation == expected.return_annotation, name


def _attributes_used(source: Path, receiver: str) -> set[str]:
    """Attribute names read on ``receiver`` (``triton`` or ``self.runtime``) in ``source``."""
    used = set()
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.Attribute) and ast.unparse(node.value) == receiver:
            used.add(node.attr)
    return used


@pytest.mark.parametrize(("module", "receiver"), [("cli.py", "triton"), ("supervisor.py", "self.runtime")])
def test_the_cli_and_supervisor_use_only_protocol_members(module, receiver):
    used = _attributes_used(SERVING / module, receiver)
    assert used, f"{receiver} is not used in {module}: update this test"
    assert used <= set(protocol_members()), used - set(protocol_members())


# --- the CLI against each runtime, end to end -------------------------------------------------------


@pytest.fixture(params=["local", "docker"])
def runtime(request):
    """The runtime's CLI name and, for docker, the engine its containers run in."""
    if request.param == "docker":
        return "docker", request.getfixturevalue("docker_engine")
    return "local", None


def triton_pid(serve, engine) -> int:
    """The running tritonserver's pid: the serve process's child, or the container's main process."""
    if engine is not None:
        (container,) = engine.running()
        return container.pid
    children = Path(f"/proc/{serve.process.pid}/task/{serve.process.pid}/children").read_text().split()
    (pid,) = children
    return int(pid)


def runtime_dir(pid: int) -> Path:
    """The local Triton's work directory, from its --model-repository argument."""
    args = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    (repository,) = [a.split("=", 1)[1] for a in args if a.startswith("--model-repository=")]
    return Path(repository).parent


def assert_serves_tiny(grpc_url: str, http_port: int) -> None:
    x = np.random.default_rng(3).standard_normal((2, 4)).astype(np.float32)
    client = grpcclient.InferenceServerClient(grpc_url)
    try:
        tensor = grpcclient.InferInput("x", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x)
        result = client.infer("tiny", [tensor], model_version="2")
        np.testing.assert_allclose(result.as_numpy("y"), tiny_expected(x, 2), rtol=1e-5, atol=1e-6)
    finally:
        client.close()
    http = httpclient.InferenceServerClient(f"127.0.0.1:{http_port}")
    try:
        assert http.is_server_ready()
    finally:
        http.close()


def assert_engine_clean(engine) -> None:
    if engine is not None:
        assert engine.containers == {}, "a container was left behind"
        assert engine.unhandled == [], "the runtime used Engine API routes the test engine lacks"


def test_serve_check_on_each_runtime(runtime, tiny_repository, capsys):
    name, engine = runtime
    args = ["serve", "--runtime", name, "--repository", str(tiny_repository), "--check"]
    code = main([*args, "--http-port", "0", "--grpc-port", "0", "--metrics-port", "0"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "READY" in out and "y [1, 3]" in out
    assert_engine_clean(engine)


def test_a_dead_triton_is_one_line_and_exit_6_on_each_runtime(runtime, tiny_repository, serve_process):
    name, engine = runtime
    serve = serve_process("--runtime", name, "--repository", str(tiny_repository))
    serve.wait_for("serving — Ctrl-C to stop")
    serve.wait_for("Started GRPCInferenceService")  # the log streams to the console on both
    os.kill(triton_pid(serve, engine), signal.SIGKILL)
    assert serve.wait() == 6, serve.output
    assert "Traceback" not in serve.output
    errors = [line for line in serve.lines if line.startswith("error:")]
    assert errors == [
        "error: Triton stopped unexpectedly (killed by SIGKILL, exit code 137) — its log is above; "
        "--restart on-failure restarts it"
    ], serve.output
    assert_engine_clean(engine)


def test_restart_on_failure_brings_it_back_on_the_same_ports(runtime, tiny_repository, serve_process):
    name, engine = runtime
    serve = serve_process("--runtime", name, "--repository", str(tiny_repository), "--restart", "on-failure")
    serve.wait_for("serving — Ctrl-C to stop")
    first = triton_pid(serve, engine)
    first_dir = runtime_dir(first)
    assert_serves_tiny(serve.grpc_url, serve.http_port)
    first_regions = cleanup.shm_regions_of(cleanup.group_pids(first))
    assert first_regions, "one shared-memory region per loaded version"

    os.kill(first, signal.SIGKILL)
    serve.wait_for(r"Triton stopped \(killed by SIGKILL, exit code 137\) after \d+ s up: restart 1 in 1 s")
    serve.wait_for(rf"restart 1: Triton is ready again at {serve.grpc_url}$")
    second = triton_pid(serve, engine)
    second_dir = runtime_dir(second)
    assert second != first and second_dir != first_dir
    assert_serves_tiny(serve.grpc_url, serve.http_port)
    # the dead run left nothing: no process of its group, no shared memory, no runtime repository
    assert cleanup.group_pids(first) == []
    assert [r for r in first_regions if r.exists()] == []
    assert not first_dir.exists()
    if engine is not None:
        assert len(engine.containers) == 1

    serve.process.send_signal(signal.SIGTERM)
    assert serve.wait() == 0, serve.output
    assert "SIGTERM: stopping Triton (it was restarted 1 time(s))" in serve.output
    assert cleanup.group_pids(second) == []
    assert not second_dir.exists()
    assert_engine_clean(engine)
