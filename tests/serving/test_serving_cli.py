"""`tritium serve` and `tritium models load/unload`, end to end on the real local Triton."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tritium.cli import main
from tritium.serving import cleanup, registry
from tritium.serving.control import TritonControl
from tritium.serving.ports import free_port


def test_serve_check_infers_once_per_model_and_stops(tiny_repository, capsys):
    args = ["serve", "--repository", str(tiny_repository), "--check"]
    code = main([*args, "--http-port", "0", "--grpc-port", "0", "--metrics-port", "0"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "READY" in out and "y [1, 3]" in out


def test_serve_unknown_model_is_one_line_exit_2(tiny_repository, capsys):
    code = main(["serve", "--repository", str(tiny_repository), "--model", "nope", "--http-port", "0"])
    assert code == 2
    assert "no model nope" in capsys.readouterr().err


def _children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(p) for p in text.split()]


def test_sigterm_stops_serve_with_nothing_left_behind(tiny_repository, tmp_path):
    ports = [free_port() for _ in range(3)]
    grpc_url = f"127.0.0.1:{ports[1]}"
    command = [
        sys.executable, "-c", "import sys; from tritium.cli import main; sys.exit(main())",
        "serve", "--repository", str(tiny_repository), "--log-file", str(tmp_path / "triton.log"),
        "--http-port", str(ports[0]), "--grpc-port", str(ports[1]), "--metrics-port", str(ports[2]),
    ]  # fmt: skip
    serve = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        with TritonControl(grpc_url) as control:
            control.wait_ready(180, alive=lambda: serve.poll() is None)
        for _ in range(100):
            if registry.lookup(grpc_url) and cleanup.stub_pids(_children(serve.pid)[0]):
                break
            time.sleep(0.1)
        (triton_pid,) = _children(serve.pid)
        stubs = cleanup.stub_pids(triton_pid)
        regions = cleanup.shm_regions_of(cleanup.group_pids(triton_pid))
        assert len(stubs) == 2 and regions
        serve.send_signal(signal.SIGTERM)
        out, _ = serve.communicate(timeout=60)
    finally:
        if serve.poll() is None:
            serve.kill()
            serve.wait()
    assert serve.returncode == 0, out
    assert "SIGTERM: stopping Triton" in out
    assert cleanup.group_pids(triton_pid) == []
    assert not any(os.path.exists(f"/proc/{pid}") for pid in stubs)
    assert [r for r in regions if r.exists()] == []
    assert registry.lookup(grpc_url) is None


@pytest.fixture
def served_copy(local_triton, tiny_repository_copy):
    triton = local_triton(tiny_repository_copy)
    yield triton
    triton.stop()


def test_models_load_picks_up_a_new_version_and_unload(served_copy, write_tiny_version, capsys):
    url = served_copy.grpc_url
    write_tiny_version(served_copy.repository / "tiny", 3)
    assert main(["models", "load", "tiny", "--url", url]) == 0
    assert "versions ready: 1, 2, 3" in capsys.readouterr().out
    assert main(["models", "load", "tiny", "-v", "3", "--url", url]) == 0
    assert "versions ready: 3" in capsys.readouterr().out
    assert main(["models", "unload", "tiny", "--url", url]) == 0
    with TritonControl(url) as control:
        assert {m.state for m in control.index() if m.name == "tiny"} == {"UNAVAILABLE"}


def test_models_load_on_a_server_it_did_not_start(served_copy, capsys):
    registry.forget(served_copy.grpc_url)
    assert main(["models", "load", "tiny", "-v", "1", "--url", served_copy.grpc_url]) == 0
    out = capsys.readouterr().out
    assert "loaded from the server's repository" in out and "versions ready: 1" in out


def test_models_bad_cases_are_one_line_errors(served_copy, capsys):
    url = served_copy.grpc_url
    assert main(["models", "load", "nope", "--url", url]) == 2
    assert "no model 'nope'" in capsys.readouterr().err
    assert main(["models", "unload", "nope", "--url", url]) == 2
    assert "no model 'nope'" in capsys.readouterr().err
    assert main(["models", "load", "tiny", "-v", "9", "--url", url]) == 2
    assert "no version 9" in capsys.readouterr().err
    assert main(["models", "unload", "tiny", "--url", f"127.0.0.1:{free_port()}"]) == 6
    assert "is not reachable" in capsys.readouterr().err
