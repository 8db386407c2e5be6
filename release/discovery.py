"""Replica addresses from a headless Service: `dns+NAME:PORT` (or `dns+http://NAME:PORT`) stands for
one address per A/AAAA record of NAME, as Thanos and Cortex write it.

On Kubernetes a headless Service's name resolves to the addresses of its ready pods, so a release
Job names `dns+triton-replicas.tritium.svc:8001` once and drives every Triton replica there is.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from tritium.errors import UserInputError

PREFIX = "dns+"


def expand(option: str, values: list[str]) -> list[str]:
    """Every value as given, except `dns+` ones, each replaced by one address per record (sorted)."""
    found: list[str] = []
    for value in values:
        found.extend(_resolve(option, value[len(PREFIX) :]) if value.startswith(PREFIX) else [value])
    return found


def _resolve(option: str, address: str) -> list[str]:
    scheme, rest = ("", address)
    if "://" in address:
        parts = urlsplit(address)
        scheme, rest = f"{parts.scheme}://", parts.netloc
    host, _, port = rest.rpartition(":")
    if not host or not port.isdigit():
        raise UserInputError(
            f"{option} {PREFIX}{address!r} needs a host and a port",
            hint=f"e.g. {option} {PREFIX}triton-replicas.tritium.svc:8001",
        )
    try:
        records = socket.getaddrinfo(host.strip("[]"), int(port), type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UserInputError(
            f"{option} {PREFIX}{address}: {host!r} does not resolve ({exc})",
            hint="name a headless Service (clusterIP: None) that has ready pods",
        ) from None
    addresses = sorted({record[4][0] for record in records}, key=lambda ip: ipaddress.ip_address(ip))
    return [f"{scheme}{_host(ip)}:{port}" for ip in addresses]


def _host(ip: str) -> str:
    return f"[{ip}]" if ":" in ip else ip
