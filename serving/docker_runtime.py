"""Serve the canonical repository with the official Triton image, through the Docker SDK.

The official image has the onnxruntime, TensorRT and PyTorch backends, so it serves
``model_repository/`` as written (no runtime repository). GPUs are requested when the engine has
the NVIDIA runtime. Without a reachable engine, :func:`docker_client` raises one
:class:`UnavailableError` line pointing to ``--runtime local``.

Public API: ``DockerTriton(repository, *, image=DEFAULT_IMAGE, ...)``, a
:class:`tritium.serving.runtime.TritonRuntime` like :class:`tritium.serving.local.LocalTriton`
(same context-manager shape, URLs, ``load``/``unload``). ``stop()`` removes the container, so a
restart (``start()`` again) runs a new one on the same host ports.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from tritium.errors import UnavailableError
from tritium.extras import Extra, MissingExtraError
from tritium.serving import health
from tritium.serving.control import TritonControl
from tritium.serving.ports import ServerAddresses, free_port
from tritium.serving.runtime import ExitStatus

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
        self._exit: ExitStatus | None = None

    @property
    def ports(self) -> dict[str, int]:
        return {"http": self.http_port, "grpc": self.grpc_port, "metrics": self.metrics_port}

    @property
    def skipped_models(self) -> dict[str, str]:
        return {}  # the official image has every backend the builder writes for

    def start(self) -> DockerTriton:
        if self.container is not None:
            return self
        client = docker_client()
        from docker.errors import DockerException, ImageNotFound

        with _engine_errors("start"):
            gpu = has_nvidia_runtime(client.info()) if self.gpu is None else self.gpu
        options = container_options(
            self.repository, image=self.image, host=self.host, ports=self.ports, models=self.models, gpu=gpu
        )
        options.pop("detach")
        self._exit = None
        try:
            # create, keep, then start (not containers.run): a container that fails to start or a
            # Ctrl-C in between is still ours to remove in stop().
            try:
                self.container = client.containers.create(**options)
            except ImageNotFound:
                client.images.pull(self.image)
                self.container = client.containers.create(**options)
            self.container.start()
        except DockerException as exc:
            explanation = getattr(exc, "explanation", None) or str(exc)
            raise UnavailableError(
                f"Docker could not start {self.image}: {' '.join(str(explanation).split())[:200]}",
                hint="pull the image (docker pull) and free the ports, or use --runtime local",
            ) from None
        except _connection_errors() as exc:
            raise _engine_lost("start", exc) from None
        return self

    def is_running(self) -> bool:
        return self._state() in ("created", "running", "restarting")

    def exit_status(self) -> ExitStatus | None:
        if self.container is None:
            return self._exit
        state = self._state()
        if state in ("created", "running", "restarting"):
            return None
        if state == "removed":
            return ExitStatus(None, "its container was removed by someone else")
        return ExitStatus(int(self.container.attrs["State"].get("ExitCode", -1)))

    def _state(self) -> str:
        """The container's status, ``removed`` when it is gone, ``none`` before start."""
        if self.container is None:
            return "none"
        from docker.errors import NotFound

        try:
            with _engine_errors("watch the container"):
                self.container.reload()
        except NotFound:
            return "removed"
        return self.container.status

    def wait_ready(self, timeout_s: float | None = None) -> None:
        with TritonControl(self.grpc_url) as control:
            try:
                control.wait_ready(
                    timeout_s or self.ready_timeout_s,
                    alive=self.is_running,
                    also_ready=lambda: health.http_and_metrics_ready(self.http_url, self.metrics_url),
                )
            except UnavailableError as exc:
                raise UnavailableError(exc.message, hint=f"last log lines:\n{self.log_tail()}") from None
            self.failed_models = control.failed_models()

    def log_tail(self, lines: int = 15) -> str:
        if self.container is None:
            return "(no log: the container was removed when it stopped)"
        from docker.errors import DockerException

        try:
            with _engine_errors("read the container's log"):
                return self.container.logs(tail=lines).decode(errors="replace").rstrip("\n")
        except (DockerException, UnavailableError):
            return "(no log: the container is gone)"

    def follow_log(self, emit: Callable[[str], None], stop: threading.Event) -> None:
        container = self.container
        if container is None:
            return
        from docker.errors import DockerException

        pending = b""
        try:
            # Ends when the container stops; the stream cannot be interrupted, so the caller runs
            # this in a daemon thread and ``stop`` only silences it.
            for chunk in container.logs(stream=True, follow=True):
                *lines, pending = (pending + chunk).split(b"\n")
                for line in lines:
                    if stop.is_set():
                        return
                    emit(line.decode(errors="replace"))
        except (DockerException, *_connection_errors()):
            return  # the container or the engine went away: the watcher reports it
        if pending and not stop.is_set():
            emit(pending.decode(errors="replace"))

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
        if container is None:
            return
        from docker.errors import DockerException, NotFound

        try:
            with _engine_errors("stop the container"):
                container.stop(timeout=int(timeout_s))
                container.reload()
                self._exit = ExitStatus(int(container.attrs["State"].get("ExitCode", -1)))
                container.remove(force=True)
        except NotFound:
            self._exit = self._exit or ExitStatus(None, "its container was removed by someone else")
        except DockerException as exc:
            explanation = getattr(exc, "explanation", None) or str(exc)
            raise UnavailableError(
                f"Docker could not remove container {container.short_id}: {' '.join(str(explanation).split())[:200]}",
                hint=f"remove it yourself: docker rm -f {container.short_id}",
            ) from None

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


def _connection_errors() -> tuple[type[Exception], ...]:
    # The SDK lets requests' own errors through when the engine's socket goes away mid-call.
    import requests

    return (requests.exceptions.ConnectionError, requests.exceptions.Timeout)


def _engine_lost(action: str, exc: Exception) -> UnavailableError:
    return UnavailableError(
        f"lost the Docker engine while trying to {action}: {type(exc).__name__}",
        hint="check that Docker is running (docker info); the container may still be up: docker ps",
    )


@contextlib.contextmanager
def _engine_errors(action: str) -> Iterator[None]:
    """Turn a vanished engine into one line; the SDK's own API errors pass through to the caller."""
    try:
        yield
    except _connection_errors() as exc:
        raise _engine_lost(action, exc) from None
