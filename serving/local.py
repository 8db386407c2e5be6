"""Serve a canonical model repository on the ``tritonserver`` bundled in nvidia-pytriton.

Public API (used by the CLI, the gateway's tests and the benchmarks)::

    from tritium.serving.local import LocalTriton

    with LocalTriton(Path("model_repository"), models=["digits"]) as triton:   # start + wait_ready
        triton.http_url      # "http://127.0.0.1:<port>"  (triton.http_address: "127.0.0.1:<port>")
        triton.grpc_url      # "127.0.0.1:<port>"         (a gRPC target, as tritonclient.grpc wants)
        triton.metrics_url   # "http://127.0.0.1:<port>/metrics"
        triton.failed_models # {name: Triton's reason} for models that did not load
        triton.load("digits", versions=[1, 3])    # re-derive from the repository, load over gRPC
        triton.unload("digits")
    # stop(): SIGTERM, then no stub process and no shared-memory region is left behind

It implements :class:`tritium.serving.runtime.TritonRuntime`; ``stop()`` then ``start()`` again
serves on the same ports (what ``tritium serve --restart on-failure`` does after a crash).
Ports default to free ephemeral ports on 127.0.0.1. Model control is explicit; a model that fails
to load is reported in ``failed_models`` and the others keep serving. The runtime repository
(see :mod:`tritium.serving.runtime_repo`) and the backend directory live in ``work_dir`` (a temporary
directory unless given); the canonical repository is only read.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from tritium.errors import NotFoundError, UnavailableError
from tritium.serving import cleanup, health, registry
from tritium.serving.control import TritonControl
from tritium.serving.distribution import (
    TritonDistribution,
    check_numpy,
    find_distribution,
    prepare_backend_dir,
    server_environment,
)
from tritium.serving.ports import ServerAddresses, free_port
from tritium.serving.runtime import ExitStatus
from tritium.serving.runtime_repo import Derivation, derive, derive_model, model_names

LOOPBACK = "127.0.0.1"


def server_args(
    dist: TritonDistribution,
    *,
    model_repository: Path,
    backend_dir: Path,
    host: str,
    http_port: int,
    grpc_port: int,
    metrics_port: int,
    models: Sequence[str] | None,
    extra_args: Sequence[str] = (),
    model_control_mode: str = "explicit",
) -> list[str]:
    """The ``tritonserver`` command line for a CPU machine, with explicit model control by default.

    ``model_control_mode`` ``none`` or ``poll`` (tests of clients meeting such a server) loads every model
    at start and refuses load/unload requests; ``--load-model`` is only valid with ``explicit``.
    """
    load = [f"--load-model={name}" for name in models] if models is not None else ["--load-model=*"]
    if model_control_mode != "explicit":
        load = []
    return [
        str(dist.binary),
        f"--model-repository={model_repository}",
        f"--backend-directory={backend_dir}",
        f"--cache-directory={dist.caches}",
        f"--model-control-mode={model_control_mode}",
        *load,
        "--exit-on-error=false",
        "--strict-readiness=false",
        "--disable-auto-complete-config",
        "--allow-gpu-metrics=false",
        "--pinned-memory-pool-byte-size=0",
        f"--http-address={host}",
        f"--http-port={http_port}",
        f"--grpc-address={host}",
        f"--grpc-port={grpc_port}",
        f"--metrics-address={host}",
        f"--metrics-port={metrics_port}",
        "--metrics-config=summary_latencies=true",
        "--log-info=true",
        *extra_args,
    ]


class LocalTriton(ServerAddresses):
    def __init__(
        self,
        repository: Path,
        *,
        http_port: int | None = None,
        grpc_port: int | None = None,
        metrics_port: int | None = None,
        models: Sequence[str] | None = None,
        log_file: Path | None = None,
        work_dir: Path | None = None,
        host: str = LOOPBACK,
        extra_args: Sequence[str] = (),
        ready_timeout_s: float = 180.0,
        model_control_mode: str = "explicit",
    ) -> None:
        self.repository = Path(repository).resolve()
        self.host = host
        self.http_port = http_port or free_port(host)
        self.grpc_port = grpc_port or free_port(host)
        self.metrics_port = metrics_port or free_port(host)
        self.models = list(models) if models is not None else None
        self._own_work_dir = work_dir is None
        self.work_dir: Path | None = Path(work_dir) if work_dir else None  # a temporary one from start()
        self._log_file = Path(log_file) if log_file else None
        self.extra_args = list(extra_args)
        self.model_control_mode = model_control_mode
        self.ready_timeout_s = ready_timeout_s
        self.derivation = Derivation()
        self.failed_models: dict[str, str] = {}
        self.process: subprocess.Popen | None = None
        self._shm_regions: set[Path] = set()
        self._log_start = 0  # where this run's lines begin in a log file shared with earlier runs
        self._exit: ExitStatus | None = None

    @property
    def log_file(self) -> Path:
        return self._log_file or self._work() / "tritonserver.log"

    @property
    def skipped_models(self) -> dict[str, str]:
        return {skipped.name: skipped.reason for skipped in self.derivation.skipped}

    @property
    def runtime_repository(self) -> Path:
        return self._work() / "repository"

    def _work(self) -> Path:
        if self.work_dir is None:
            raise UnavailableError("the local Triton was not started", hint="call start() first")
        return self.work_dir

    def __enter__(self) -> LocalTriton:
        try:
            self.start()
            self.wait_ready(self.ready_timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> LocalTriton:
        if self.process is not None:
            return self
        dist = find_distribution()
        check_numpy()
        if self._own_work_dir:  # a fresh one per run: stop() removed the last one
            self.work_dir = Path(tempfile.mkdtemp(prefix="tritium-triton-"))
        self.derivation = derive(self.repository, self.runtime_repository, self.models)
        served = [m.name for m in self.derivation.models]
        backend_dir = prepare_backend_dir(dist, self._work() / "backends")
        args = server_args(
            dist,
            model_repository=self.runtime_repository,
            backend_dir=backend_dir,
            host=self.host,
            http_port=self.http_port,
            grpc_port=self.grpc_port,
            metrics_port=self.metrics_port,
            models=served if self.models is not None else None,
            extra_args=self.extra_args,
            model_control_mode=self.model_control_mode,
        )
        if self.models is not None and not served:
            args = [a for a in args if not a.startswith("--load-model")]
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self._exit = None
        with open(self.log_file, "ab") as log:
            self._log_start = log.tell()
            self.process = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=server_environment(dist),
                start_new_session=True,
            )
        registry.record(
            registry.ServerRecord(
                self.grpc_url, str(self.repository), str(self.runtime_repository), self.process.pid
            )
        )
        return self

    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def exit_status(self) -> ExitStatus | None:
        if self.process is not None:
            returncode = self.process.poll()
            return None if returncode is None else ExitStatus.from_returncode(returncode)
        return self._exit

    def wait_ready(self, timeout_s: float | None = None) -> None:
        if self.process is None:
            raise UnavailableError("the local Triton was not started", hint="call start() first")
        with self._control() as control:
            try:
                control.wait_ready(
                    timeout_s or self.ready_timeout_s,
                    alive=self.is_running,
                    also_ready=lambda: health.http_and_metrics_ready(self.http_url, self.metrics_url),
                )
            except UnavailableError as exc:
                raise UnavailableError(exc.message, hint=f"last log lines:\n{self.log_tail()}") from None
            self.failed_models = control.failed_models()
        # Remember the stubs' shared memory now: if the whole group is killed later, nothing is left
        # to ask which regions it had mapped, and the stubs cannot remove them themselves.
        self._shm_regions |= cleanup.shm_regions_of(cleanup.group_pids(self.process.pid))

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def follow_log(self, emit: Callable[[str], None], stop: threading.Event) -> None:
        path, start = self.log_file, self._log_start
        while not path.exists() and not stop.is_set():
            time.sleep(0.1)
        try:
            log = open(path, errors="replace")  # noqa: SIM115 - closed below, after the loop
        except OSError:
            return  # the run ended and its directory went with it
        with log:
            log.seek(start)
            while not stop.is_set():
                line = log.readline()
                if line:
                    emit(line.rstrip("\n"))
                else:
                    time.sleep(0.2)

    def load(self, model: str, versions: Sequence[int] | None = None) -> None:
        """Re-derive ``model`` (new versions, new config) and load it; ``versions`` overrides the policy."""
        if model not in model_names(self.repository):
            raise NotFoundError(f"no model '{model}' in {self.repository}")
        derive_model(self.repository / model, self.runtime_repository / model, versions=versions)
        with self._control() as control:
            control.load(model)
        self.failed_models.pop(model, None)

    def unload(self, model: str) -> None:
        with self._control() as control:
            control.unload(model)

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM and wait; after ``timeout_s`` kill the group and remove its shared memory."""
        process, self.process = self.process, None
        if process is not None:
            pgid = process.pid
            self._shm_regions |= cleanup.shm_regions_of(cleanup.group_pids(pgid))
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                cleanup.kill_group(pgid)
                process.wait()
            self._exit = ExitStatus.from_returncode(process.returncode)
            if cleanup.group_pids(pgid):
                cleanup.kill_group(pgid)
            cleanup.remove_regions(self._shm_regions)
            self._shm_regions.clear()
            registry.forget(self.grpc_url)
        if self._own_work_dir and self.work_dir is not None:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    def _control(self) -> TritonControl:
        return TritonControl(self.grpc_url)
