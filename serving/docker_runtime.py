"""Serve the canonical repository with the official Triton image, through the Docker SDK.

The official image has the onnxruntime, TensorRT and PyTorch backends, so it serves
``model_repository/`` as written (no runtime repository). GPUs are requested when the engine has
the NVIDIA runtime. Without a reachable engine, :func:`docker_client` raises one
:class:`UnavailableError` line pointing to ``--runtime local``.

Public API: ``DockerTriton(repository, *, image=DEFAULT_IMAGE, ...)`` with the same context-manager
shape, URLs and ``load``/``unload`` as :class:`tritium.serving.local.LocalTriton`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tritium.errors import UnavailableError
from tritium.extras import Extra, MissingExtraError
from tritium.serving.control import TritonControl
from tritium.serving.ports import ServerAddresses, free_port

DEFAULT_IMAGE = os.environ.get("TRITON_IMAGE", "nvcr.io/nvidia/tritonserver:25.10-py3")
MODELS_MOUNT = "/models"
CONTAINER_PORTS = {"http": 8000, "grpc": 8001, "metrics": 8002}


def docker_client():
    """A client for the local Docker engine, or one clear line saying there is none."""
    try:
        import docker
        from docker.errors import DockerException
    except ModuleNotFoundError as exc:
        raise MissingExtraError("docker", Extra.serve, what="--runtime docker") from exc
    try:
        client = docker.from_env()
        client.ping()
    except DockerException as exc:
        raise UnavailableError(
            "no Docker engine is reachable (is Docker installed and running, DOCKER_HOST right?)",
            hint="serve with the bundled Triton instead: tritium serve --runtime local",
        ) from exc
    return client


def has_nvidia_runtime(info: dict[str, Any]) -> bool:
    return "nvidia" in (info.get("Runtimes") or {})


def container_command(models: Sequence[str] | None) -> list[str]:
    load = [f"--load-model={m}" for m in models] if models is not None else ["--load-model=*"]
    return [
        "tritonserver",
        f"--model-repository={MODELS_MOUNT}",
        "--model-control-mode=explicit",
        *load,
        "--exit-on-error=false",
        "--strict-readiness=false",
        "--metrics-config=summary_latencies=true",
    ]


def container_options(
    repository: Path,
    *,
    image: str,
    host: str,
    ports: dict[str, int],
    models: Sequence[str] | None,
    gpu: bool,
) -> dict[str, Any]:
    """Keyword arguments for ``client.containers.run`` (pure, testable without an engine)."""
    from docker.types import DeviceRequest

    options: dict[str, Any] = {
        "image": image,
        "command": container_command(models),
        "detach": True,
        "auto_remove": False,
        "shm_size": "1g",
        "volumes": {str(Path(repository).resolve()): {"bind": MODELS_MOUNT, "mode": "ro"}},
        "ports": {f"{CONTAINER_PORTS[name]}/tcp": (host, port) for name, port in ports.items()},
        "labels": {"org.tritium.role": "triton"},
        "healthcheck": {
            "test": ["CMD", "curl", "-fsS", "localhost:8000/v2/health/ready"],
            "interval": 5_000_000_000,
            "retries": 30,
        },
    }
    if gpu:
        options["device_requests"] = [DeviceRequest(count=-1, capabilities=[["gpu"]])]
    return options


class DockerTriton(ServerAddresses):
    def __init__(
        self,
        repository: Path,
        *,
        image: str = DEFAULT_IMAGE,
        http_port: int | None = None,
        grpc_port: int | None = None,
        metrics_port: int | None = None,
        models: Sequence[str] | None = None,
        gpu: bool | None = None,
        host: str = "127.0.0.1",
        ready_timeout_s: float = 300.0,
    ) -> None:
        self.repository = Path(repository)
        self.image = image
        self.host = host
        self.http_port = http_port or free_port(host)
        self.grpc_port = grpc_port or free_port(host)
        self.metrics_port = metrics_port or free_port(host)
        self.models = list(models) if models is not None else None
        self.gpu = gpu
        self.ready_timeout_s = ready_timeout_s
        self.container = None
        self.failed_models: dict[str, str] = {}

    @property
    def ports(self) -> dict[str, int]:
        return {"http": self.http_port, "grpc": self.grpc_port, "metrics": self.metrics_port}

    def start(self) -> DockerTriton:
        client = docker_client()
        gpu = has_nvidia_runtime(client.info()) if self.gpu is None else self.gpu
        options = container_options(
            self.repository, image=self.image, host=self.host, ports=self.ports, models=self.models, gpu=gpu
        )
        from docker.errors import DockerException

        try:
            self.container = client.containers.run(**options)
        except DockerException as exc:
            explanation = getattr(exc, "explanation", None) or str(exc)
            raise UnavailableError(
                f"Docker could not start {self.image}: {' '.join(str(explanation).split())[:200]}",
                hint="pull the image (docker pull) and free the ports, or use --runtime local",
            ) from None
        return self

    def is_running(self) -> bool:
        if self.container is None:
            return False
        self.container.reload()
        return self.container.status in ("created", "running")

    def wait_ready(self, timeout_s: float | None = None) -> None:
        with TritonControl(self.grpc_url) as control:
            control.wait_ready(timeout_s or self.ready_timeout_s, alive=self.is_running)
            self.failed_models = control.failed_models()

    def logs(self, tail: int = 50) -> str:
        return self.container.logs(tail=tail).decode(errors="replace") if self.container else ""

    def load(self, model: str, versions: Sequence[int] | None = None) -> None:
        with TritonControl(self.grpc_url) as control:
            config = None
            if versions is not None:
                config = control.model_config(model)
                config.version_policy.specific.versions[:] = sorted(set(versions))
            control.load(model, config=config)

    def unload(self, model: str) -> None:
        with TritonControl(self.grpc_url) as control:
            control.unload(model)

    def stop(self, timeout_s: float = 30.0) -> None:
        container, self.container = self.container, None
        if container is not None:
            container.stop(timeout=int(timeout_s))
            container.remove(force=True)

    def __enter__(self) -> DockerTriton:
        try:
            self.start()
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
