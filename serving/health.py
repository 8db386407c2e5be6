"""Whether Triton's HTTP and metrics endpoints answer, next to the gRPC readiness in :mod:`control`.

Triton starts gRPC, then HTTP, then metrics, and exits when one of them cannot bind its port; gRPC
answers "ready" before that happens. So a server is only ready once all three answer: otherwise a
Triton whose HTTP port was taken looks ready for a few milliseconds and then exits with code 1.
"""

from __future__ import annotations

import urllib.error
import urllib.request

PROBE_TIMEOUT_S = 1.0
# Never through an HTTP(S)_PROXY from the environment: these are our own loopback (or bound) ports.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def answers(url: str, timeout_s: float = PROBE_TIMEOUT_S) -> bool:
    """``GET url`` returned 200 (a port held by something that never answers times out: False)."""
    try:
        with _OPENER.open(url, timeout=timeout_s) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def http_and_metrics_ready(http_url: str, metrics_url: str) -> bool:
    return answers(f"{http_url}/v2/health/ready") and answers(metrics_url)
