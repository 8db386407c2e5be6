"""A Docker Engine API server for tests: the part of the API ``DockerTriton`` uses, on a Unix socket.

No Docker engine runs on these machines. This server answers the real docker SDK over the real
transport (HTTP on a Unix socket, ``DOCKER_HOST=unix://...``) with the Engine API's own routes,
JSON shapes, status codes and multiplexed log stream, and runs each container's Triton as the
bundled ``tritonserver``: a :class:`LocalTriton` on the container's published host ports serving its
bind-mounted repository. So ``DockerTriton`` and ``tritium serve --runtime docker`` run end to end
(SDK calls, readiness and inference over gRPC against a real Triton, a process that really dies);
what is missing is the container itself (image, isolation, the official image's backends).

Only images listed in ``images`` exist; pulls fail as they would offline. Requests for routes it does
not implement answer 404 as the engine does, and are kept in ``unhandled`` so tests can assert none.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import socketserver
import struct
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tritium.serving.local import LocalTriton

API_VERSION = "1.45"
_PORT_ROLE = {"8000/tcp": "http_port", "8001/tcp": "grpc_port", "8002/tcp": "metrics_port"}
_STDOUT = 1


@dataclass
class Container:
    id: str
    image: str
    cmd: list[str]
    binds: list[str]
    port_bindings: dict[str, list[dict[str, str]]]
    labels: dict[str, str]
    log_path: Path
    status: str = "created"
    exit_code: int = 0
    triton: LocalTriton | None = None
    pid: int = 0

    def refresh(self) -> None:
        """Notice a Triton that died on its own, as the engine notices a container's exit."""
        if self.status == "running" and self.triton is not None and self.triton.process is not None:
            returncode = self.triton.process.poll()
            if returncode is not None:
                self.status = "exited"
                self.exit_code = 128 - returncode if returncode < 0 else returncode

    def inspect(self) -> dict[str, Any]:
        self.refresh()
        return {
            "Id": self.id,
            "Name": f"/{self.id[:12]}",
            "Image": self.image,
            "Config": {"Image": self.image, "Cmd": self.cmd, "Labels": self.labels, "Tty": False},
            "HostConfig": {"Binds": self.binds, "PortBindings": self.port_bindings},
            "State": {
                "Status": self.status,
                "Running": self.status == "running",
                "ExitCode": self.exit_code,
                "Pid": self.pid if self.status == "running" else 0,
            },
        }

    def start(self) -> None:
        (repository,) = [b.split(":")[0] for b in self.binds if b.split(":")[1] == "/models"]
        loads = [a.split("=", 1)[1] for a in self.cmd if a.startswith("--load-model=")]
        ports: dict[str, int] = {}
        host = "127.0.0.1"
        for container_port, bindings in self.port_bindings.items():
            ports[_PORT_ROLE[container_port]] = int(bindings[0]["HostPort"])
            host = bindings[0].get("HostIp") or host
        for port in ports.values():
            _check_free(host, port)
        self.triton = LocalTriton(
            Path(repository),
            models=None if loads == ["*"] else loads,
            host=host,
            log_file=self.log_path,
            **ports,
        )
        self.triton.start()
        self.status, self.exit_code = "running", 0
        assert self.triton.process is not None
        self.pid = self.triton.process.pid

    def stop(self) -> None:
        self.refresh()
        if self.triton is None:
            return
        process = self.triton.process
        self.triton.stop()  # SIGTERM, then the whole group and its shared memory, like a cgroup
        if self.status == "running" and process is not None:
            self.status = "exited"
            self.exit_code = 128 - process.returncode if process.returncode < 0 else process.returncode


class PortAllocated(Exception):
    pass


def _check_free(host: str, port: int) -> None:
    with socket.socket() as probe:
        # as the engine's own listeners do (Go sets SO_REUSEADDR): a closed connection's TIME_WAIT
        # on the port does not make it "allocated"
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            raise PortAllocated(
                f"driver failed programming external connectivity: Bind for {host}:{port} failed: "
                "port is already allocated"
            ) from None


@dataclass
class DockerEngine:
    """``with DockerEngine(images={...}) as engine: os.environ["DOCKER_HOST"] = engine.url``."""

    images: set[str]
    containers: dict[str, Container] = field(default_factory=dict)
    unhandled: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        # A short path of our own: Unix socket paths are limited to 107 bytes.
        self.dir = Path(tempfile.mkdtemp(prefix="dockerd-"))
        self.socket_path = self.dir / "docker.sock"
        self.url = f"unix://{self.socket_path}"
        self._server = _Server(str(self.socket_path), _handler(self))
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self.lock = threading.Lock()

    def __enter__(self) -> DockerEngine:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        for container in self.containers.values():
            container.stop()
        shutil.rmtree(self.dir, ignore_errors=True)  # the socket and the containers' logs

    def running(self) -> list[Container]:
        with self.lock:
            for container in self.containers.values():
                container.refresh()
            return [c for c in self.containers.values() if c.status == "running"]


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


_ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    ("HEAD", re.compile(r"/_ping"), "ping"),
    ("GET", re.compile(r"/_ping"), "ping"),
    ("GET", re.compile(r"/version"), "version"),
    ("GET", re.compile(r"/info"), "info"),
    ("POST", re.compile(r"/containers/create"), "create"),
    ("POST", re.compile(r"/images/create"), "pull"),
    ("POST", re.compile(r"/containers/(?P<id>\w+)/start"), "start"),
    ("POST", re.compile(r"/containers/(?P<id>\w+)/stop"), "stop"),
    ("GET", re.compile(r"/containers/(?P<id>\w+)/json"), "inspect"),
    ("GET", re.compile(r"/containers/(?P<id>\w+)/logs"), "logs"),
    ("DELETE", re.compile(r"/containers/(?P<id>\w+)"), "remove"),
]
_VERSION_PREFIX = re.compile(r"^/v\d+\.\d+")


def _handler(engine: DockerEngine) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "fake-dockerd"

        def log_message(self, format: str, *args: Any) -> None:
            pass  # a Unix socket has no client address to log, and tests read the requests list

        def do_HEAD(self) -> None:
            self._dispatch("HEAD")

        def do_GET(self) -> None:
            self._dispatch("GET")

        def do_POST(self) -> None:
            self._dispatch("POST")

        def do_DELETE(self) -> None:
            self._dispatch("DELETE")

        def _dispatch(self, method: str) -> None:
            url = urlsplit(self.path)
            path = _VERSION_PREFIX.sub("", url.path)
            self.query = {k: v[-1] for k, v in parse_qs(url.query).items()}
            length = int(self.headers.get("Content-Length") or 0)
            self.body = json.loads(self.rfile.read(length) or b"null") if length else None
            engine.requests.append(f"{method} {path}")
            for route_method, pattern, name in _ROUTES:
                match = pattern.fullmatch(path)
                if route_method == method and match:
                    try:
                        getattr(self, f"route_{name}")(**match.groupdict())
                    except KeyError as exc:
                        self._json(404, {"message": f"No such container: {exc.args[0]}"})
                    return
            engine.unhandled.append(f"{method} {path}")
            self._json(404, {"message": "page not found"})

        def _json(self, status: int, payload: Any) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Api-Version", API_VERSION)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _empty(self, status: int) -> None:
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def route_ping(self) -> None:
            data = b"OK"
            self.send_response(200)
            self.send_header("Api-Version", API_VERSION)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def route_version(self) -> None:
            self._json(
                200, {"ApiVersion": API_VERSION, "MinAPIVersion": "1.24", "Version": "test", "Os": "linux"}
            )

        def route_info(self) -> None:
            self._json(200, {"Runtimes": {"runc": {"path": "runc"}}, "OSType": "linux"})

        def route_create(self) -> None:
            body = self.body or {}
            if body.get("Image") not in engine.images:
                self._json(404, {"message": f"No such image: {body.get('Image')}"})
                return
            host_config = body.get("HostConfig") or {}
            container = Container(
                id=uuid.uuid4().hex + uuid.uuid4().hex,
                image=body["Image"],
                cmd=list(body.get("Cmd") or []),
                binds=list(host_config.get("Binds") or []),
                port_bindings=dict(host_config.get("PortBindings") or {}),
                labels=dict(body.get("Labels") or {}),
                log_path=engine.dir / f"{len(engine.containers)}.log",
            )
            with engine.lock:
                engine.containers[container.id] = container
            self._json(201, {"Id": container.id, "Warnings": []})

        def route_pull(self) -> None:
            image = self.query.get("fromImage", "")
            self._json(500, {"message": f'Get "https://{image.split("/")[0]}/v2/": dial tcp: no network'})

        def route_start(self, id: str) -> None:
            container = engine.containers[id]
            if container.status == "running":
                self._empty(304)
                return
            try:
                container.start()
            except PortAllocated as exc:
                self._json(500, {"message": str(exc)})
                return
            self._empty(204)

        def route_stop(self, id: str) -> None:
            container = engine.containers[id]
            container.refresh()
            if container.status != "running":
                self._empty(304)
                return
            container.stop()
            self._empty(204)

        def route_inspect(self, id: str) -> None:
            with engine.lock:
                self._json(200, engine.containers[id].inspect())

        def route_remove(self, id: str) -> None:
            container = engine.containers[id]
            container.refresh()
            if container.status == "running" and self.query.get("force") not in ("1", "True", "true"):
                self._json(409, {"message": f"cannot remove container {id[:12]}: container is running"})
                return
            container.stop()
            with engine.lock:
                del engine.containers[id]
            self._empty(204)

        def route_logs(self, id: str) -> None:
            container = engine.containers[id]
            follow = self.query.get("follow") in ("1", "True", "true")
            tail = self.query.get("tail", "all")
            self.send_response(200)
            self.send_header("Content-Type", "application/vnd.docker.multiplexed-stream")
            if not follow:
                lines = _read(container.log_path, 0)[0].splitlines(keepends=True)
                if tail != "all":
                    lines = lines[-int(tail) :] if int(tail) else []
                data = b"".join(_frame(line) for line in lines)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return
            # Streamed until the container stops, then the connection closes (HTTP/1.0).
            self.end_headers()
            offset = 0
            while True:
                container.refresh()
                running = container.status == "running"
                data, offset = _read(container.log_path, offset)
                if data:
                    try:
                        self.wfile.write(_frame(data))
                        self.wfile.flush()
                    except OSError:
                        return  # the client went away
                if not running:
                    return
                time.sleep(0.1)

    return Handler


def _read(path: Path, offset: int) -> tuple[bytes, int]:
    try:
        with open(path, "rb") as log:
            log.seek(offset)
            data = log.read()
    except OSError:
        return b"", offset
    return data, offset + len(data)


def _frame(data: bytes) -> bytes:
    return struct.pack(">BxxxL", _STDOUT, len(data)) + data
