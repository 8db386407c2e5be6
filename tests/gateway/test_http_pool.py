"""The keep-alive pool that forwards REST bodies, against the real Triton."""

import asyncio
import json

import pytest

from tritium.gateway.http_pool import HttpPool

BODY = json.dumps(
    {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}
).encode()
INFER = "/v2/models/echo/versions/2/infer"


async def test_answers_reuse_connections_and_idle_ones_are_closed(triton):
    pool = HttpPool(triton.http_url, size=4, idle_timeout_s=0.4)
    pool.start()
    try:
        for _ in range(3):
            answer = await pool.request("POST", INFER, BODY, {"content-type": "application/json"})
            assert answer.status == 200
            assert json.loads(answer.body)["outputs"][0]["data"] == [2.0, 4.0, 6.0, 8.0]
            assert answer.headers["content-type"] == "application/json"
        assert len(pool._idle) == 1  # sequential requests share one connection

        answers = await asyncio.gather(*(pool.request("POST", INFER, BODY) for _ in range(8)))
        assert [a.status for a in answers] == [200] * 8
        assert 1 <= len(pool._idle) <= 4  # never more connections than the pool size

        missing = await pool.request("GET", "/v2/models/nope")
        assert missing.status == 404 and "unknown model" in json.loads(missing.body)["error"]

        await asyncio.sleep(1.0)
        assert len(pool._idle) == 0  # so Triton does not wait for them when it shuts down
    finally:
        await pool.close()


async def test_a_connection_closed_by_the_server_is_retried_once(triton):
    pool = HttpPool(triton.http_url, size=2)
    pool.start()
    try:
        assert (await pool.request("GET", "/v2/health/ready")).status == 200
        stale = pool._idle[0]
        stale.transport.close()  # as when Triton drops an idle keep-alive connection
        await asyncio.sleep(0.05)
        stale.closed = False  # the pool has not noticed yet
        assert (await pool.request("GET", "/v2/health/ready")).status == 200
    finally:
        await pool.close()


async def test_nothing_listening_is_a_connection_error():
    pool = HttpPool("127.0.0.1:1", size=1)
    pool.start()
    with pytest.raises(OSError):
        await pool.request("GET", "/v2/health/ready")
    await pool.close()
