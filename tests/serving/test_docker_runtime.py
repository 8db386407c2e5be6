"""The Docker runtime: no engine runs here, so its one-line refusal and its container spec."""

import pytest

from tritium.cli import main
from tritium.errors import UnavailableError
from tritium.serving.docker_runtime import DockerTriton, container_options, docker_client, has_nvidia_runtime


@pytest.fixture
def no_engine(monkeypatch, tmp_path):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/docker.sock")


def test_without_an_engine_it_says_so_and_points_to_the_local_runtime(no_engine):
    with pytest.raises(UnavailableError) as info:
        docker_client()
    line = info.value.one_line()
    assert "no Docker engine" in line and "--runtime local" in line and "\n" not in line
    assert info.value.exit_code == 6


def test_docker_triton_start_fails_cleanly(no_engine, tiny_repository):
    triton = DockerTriton(tiny_repository)
    with pytest.raises(UnavailableError, match="--runtime local"):
        triton.start()
    assert triton.container is None


def test_cli_serve_docker_exits_non_zero_with_one_line(no_engine, tiny_repository, capsys):
    code = main(["serve", "--runtime", "docker", "--repository", str(tiny_repository), "--http-port", "0"])
    assert code == 6
    err = capsys.readouterr().err
    assert "no Docker engine" in err and "--runtime local" in err


def test_container_options_mount_the_repository_read_only_with_gpus_when_present(tiny_repository):
    options = container_options(
        tiny_repository,
        image="nvcr.io/nvidia/tritonserver:25.10-py3",
        host="127.0.0.1",
        ports={"http": 18000, "grpc": 18001, "metrics": 18002},
        models=["tiny"],
        gpu=True,
    )
    assert options["volumes"] == {str(tiny_repository.resolve()): {"bind": "/models", "mode": "ro"}}
    assert options["ports"] == {
        "8000/tcp": ("127.0.0.1", 18000),
        "8001/tcp": ("127.0.0.1", 18001),
        "8002/tcp": ("127.0.0.1", 18002),
    }
    assert "--load-model=tiny" in options["command"] and "--model-control-mode=explicit" in options["command"]
    assert options["device_requests"][0]["Capabilities"] == [["gpu"]]
    cpu = container_options(tiny_repository, image="x", host="127.0.0.1", ports={}, models=None, gpu=False)
    assert "device_requests" not in cpu and "--load-model=*" in cpu["command"]


def test_gpu_detected_from_the_engine_runtimes():
    assert has_nvidia_runtime({"Runtimes": {"runc": {}, "nvidia": {"path": "nvidia-container-runtime"}}})
    assert not has_nvidia_runtime({"Runtimes": {"runc": {}}})
    assert not has_nvidia_runtime({})
