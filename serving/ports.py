"""Free loopback ports, found at run time, and the addresses a Triton on them answers at."""

from __future__ import annotations

import socket


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class ServerAddresses:
    """Triton's addresses for a runtime that sets ``host``, ``http_port``, ``grpc_port`` and ``metrics_port``."""

    host: str
    http_port: int
    grpc_port: int
    metrics_port: int

    @property
    def http_address(self) -> str:
        return f"{self.host}:{self.http_port}"

    @property
    def http_url(self) -> str:
        return f"http://{self.http_address}"

    @property
    def grpc_url(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.host}:{self.metrics_port}/metrics"
