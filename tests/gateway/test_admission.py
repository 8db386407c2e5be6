"""Request admission and body reading: the pure checks, and the body reader on ASGI messages."""

from __future__ import annotations

import asyncio
import gzip
import json
import re
import zlib

import pytest

from tritium.errors import (
    NotFoundError,
    OverloadedError,
    PayloadTooLargeError,
    RequestTimeoutError,
    UnsupportedMediaTypeError,
    UserInputError,
)
from tritium.gateway import admission
from tritium.gateway.body import BodyLimits, BodyReader, ByteBudget
from tritium.gateway.deadlines import Deadlines
from tritium.gateway.routes import validated_route

ROUTE = validated_route(
    {
        "targets": [
            {"alias": "stable", "model": "echo", "version": "1", "weight": 100},
            {"alias": "canary", "model": "echo", "version": "2", "weight": 0},
        ]
    }
)


@pytest.mark.parametrize("name", ["echo", "resnet-50", "7b.int8", "_x", "a" * 128, "Model_1.2-b"])
def test_model_names_triton_repositories_hold_pass(name: str) -> None:
    admission.check_model_name(name)


@pytest.mark.parametrize(
    "name", ["", ".", "..", "-x", "a/b", "digits\0x", "a b", "日本", "a" * 129, "x" * 10_000]
)
def test_other_model_names_are_refused_in_one_line_without_echoing_them(name: str) -> None:
    with pytest.raises(UserInputError) as info:
        admission.check_model_name(name)
    message = info.value.one_line()
    assert message.startswith("invalid model name") and "\n" not in message and len(message) < 400
    assert "\0" not in message


@pytest.mark.parametrize("version", ["", "1", "12", str(2**63 - 1), "canary", "stable"])
def test_versions_are_numbers_or_route_aliases(version: str) -> None:
    admission.check_version("echo", version, ROUTE)


@pytest.mark.parametrize("version", ["0", "01", "1.5", "1x", " 1", "²", "日", str(2**63), "9" * 30, "-1"])
def test_other_versions_are_400(version: str) -> None:
    with pytest.raises(UserInputError) as info:
        admission.check_version("echo", version, ROUTE)
    assert type(info.value) is UserInputError and info.value.http_status == 400


def test_an_unknown_alias_is_404_and_aliases_need_a_route() -> None:
    with pytest.raises(NotFoundError, match=r"has no target 'shadow'.*stable, canary"):
        admission.check_version("echo", "shadow", ROUTE)
    with pytest.raises(UserInputError, match="a version is a positive integer"):
        admission.check_version("other", "canary", None)


@pytest.mark.parametrize("value", ["²", "1²", "-1", "1e3", "0x10", "", "1 2", "9" * 20, "١٢"])
def test_lengths_are_ascii_digits(value: str) -> None:
    with pytest.raises(UserInputError, match="invalid Content-Length"):
        admission.parse_length(value, "Content-Length")


def test_lengths_parse() -> None:
    assert admission.parse_length(" 42 ", "x") == 42
    assert admission.json_header_length(None, 10) == 10
    assert admission.json_header_length("4", 10) == 4
    with pytest.raises(UserInputError, match="exceeds the body of 10 bytes"):
        admission.json_header_length("11", 10)


def test_json_bodies_nest_within_the_decoder_limit_and_are_requests() -> None:
    nested = json.dumps([[[[[[[[1.0]]]]]]]])  # an 8-D tensor sent nested is fine
    admission.check_json_body(
        (
            '{"inputs": [{"name": "x", "shape": [1,1,1,1,1,1,1,1], "datatype": "FP32", "data": '
            + nested
            + "}]}"
        ).encode()
    )
    deep = b"[" * 1_000_000 + b"]" * 1_000_000  # Triton crashes near 10^6 levels
    for field in (b'"data"', b'"unknown"'):  # in the tensor data, and in a field Triton ignores
        bomb = b'{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", ' + field + b": " + deep + b"}]}"
        with pytest.raises(UserInputError, match="JSON nested too deep"):
            admission.check_json_body(bomb)
    for not_request in (b"[]", b"", b"  ", b"null", b"{not json", b'{"inputs": [] } trailing'):
        with pytest.raises(UserInputError, match="invalid inference request"):
            admission.check_json_body(not_request)


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        ({"parameters": None, "inputs": []}, "Expected `object`, got `null` - at `$.parameters`"),
        ({"inputs": {}}, "Expected `array`, got `object` - at `$.inputs`"),
        ({"inputs": [{"name": 1, "shape": [1], "datatype": "FP32"}]}, "Expected `str`, got `int`"),
        ({"inputs": [{"name": "x", "shape": [-1], "datatype": "FP32"}]}, "Expected `int` >= 0"),
        ({"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": None}]}, "is not an array"),
        ({"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "parameters": {"binary_data_size": True}}]},
         "input parameters: Expected `int`, got `bool`"),
        ({"inputs": [], "parameters": {"x": [1]}}, "at `$.parameters[...]`"),
        ({"inputs": [], "outputs": [{"name": "y", "parameters": {"binary_data": 1}}]}, "Expected `bool`"),
    ],
)  # fmt: skip
def test_requests_triton_would_misread_are_refused(request_: dict, message: str) -> None:
    """Triton answers some of these 500, as if the model had failed (found by schemathesis)."""
    with pytest.raises(UserInputError, match=re.escape(message)):
        admission.check_json_body(json.dumps(request_).encode())


def test_well_formed_requests_pass_with_their_data_unparsed() -> None:
    tensor = {"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [[1, 2], [3, 4]]}
    request = {"id": "a", "inputs": [tensor], "outputs": [{"name": "y", "parameters": {"binary_data": True}}]}
    admission.check_json_body(json.dumps({**request, "parameters": {"priority": 1, "custom": "v"}}).encode())
    admission.check_json_body(b'{"inputs": [{"name": "x", "shape": [1], "datatype": "BYTES"}], "extra": 1}')


def test_tensor_shapes_must_describe_the_data() -> None:
    admission.check_tensor("x", "FP32", [1, 4], 16, limit=1024)
    admission.check_tensor("x", "BYTES", [1, 4], 99, limit=1024)  # variable-size elements: Triton checks
    with pytest.raises(UserInputError, match="more elements than a request of at most"):
        admission.check_tensor("x", "FP32", [2**62, 1, 8, 8], 256, limit=64 * 2**20)
    with pytest.raises(UserInputError, match="needs 16 bytes, the request carries 12"):
        admission.check_tensor("x", "FP32", [1, 4], 12, limit=1024)
    with pytest.raises(UserInputError, match="negative dimension"):
        admission.check_tensor("x", "FP32", [-1, 4], None, limit=1024)


# --- the body reader, on the ASGI messages a server hands the app ----------------------------------


def _receiver(*chunks: bytes, delay_s: float = 0.0, disconnect: bool = False):
    messages = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)
    ]
    if disconnect:
        messages[-1]["more_body"] = True
        messages.append({"type": "http.disconnect"})

    async def receive() -> dict:
        await asyncio.sleep(delay_s)
        return messages.pop(0)

    return receive


def _reader(budget: int = 1 << 20, limit: int = 1 << 16, timeout_s: float = 5.0) -> BodyReader:
    return BodyReader(ByteBudget(budget), BodyLimits(limit, timeout_s))


async def test_a_body_in_chunks_is_read_whole_and_held_until_released() -> None:
    reader = _reader()
    body = await reader.read(_receiver(b"ab", b"cd", b"ef"), "6", None)
    assert bytes(body) == b"abcdef" and reader.budget.used == 6
    reader.release()
    assert reader.budget.used == 0


async def test_size_lies_and_limits() -> None:
    with pytest.raises(PayloadTooLargeError, match="request body of 70000 bytes exceeds"):
        await _reader().read(_receiver(b""), "70000", None)
    with pytest.raises(PayloadTooLargeError, match="exceeds the limit"):  # chunked, no declared length
        await _reader(limit=4).read(_receiver(b"abc", b"de"), None, None)
    with pytest.raises(UserInputError, match="longer than its Content-Length"):
        await _reader().read(_receiver(b"abc", b"de"), "4", None)
    with pytest.raises(UserInputError, match="has 3 bytes, its Content-Length says 4"):
        await _reader().read(_receiver(b"ab", b"c"), "4", None)
    with pytest.raises(UserInputError, match="went away"):
        await _reader().read(_receiver(b"ab", disconnect=True), "4", None)


async def test_a_slow_body_times_out() -> None:
    with pytest.raises(RequestTimeoutError, match=r"did not arrive within 0\.2 s"):
        await _reader(timeout_s=0.2).read(_receiver(b"a", b"b", b"c", delay_s=0.15), "3", None)


async def test_one_watcher_keeps_many_deadlines() -> None:
    deadlines, expired = Deadlines(tick_s=0.02), []
    deadlines.enter("late", 0.05, lambda: expired.append("late"))
    deadlines.enter("left", 0.05, lambda: expired.append("left"))
    deadlines.leave("left")
    await asyncio.sleep(0.15)
    assert expired == ["late"] and len(deadlines) == 0
    await asyncio.sleep(0.05)  # nothing left to watch: the watcher has stopped, and starts again
    deadlines.enter("again", 0.01, lambda: expired.append("again"))
    await asyncio.sleep(0.1)
    assert expired == ["late", "again"]


async def test_the_budget_sheds_before_reading_and_frees_on_release() -> None:
    budget = ByteBudget(100)
    first = BodyReader(budget, BodyLimits(80, 5.0))
    await first.read(_receiver(b"x" * 60), "60", None)
    with pytest.raises(OverloadedError) as info:
        await BodyReader(budget, BodyLimits(80, 5.0)).read(_receiver(b"y" * 50), "50", None)
    assert info.value.http_status == 503 and info.value.retry_after_s >= 1
    first.release()
    assert budget.used == 0
    second = BodyReader(budget, BodyLimits(80, 5.0))
    await second.read(_receiver(b"y" * 50), "50", None)
    assert budget.used == 50


async def test_gzip_and_deflate_are_decoded_and_counted_decoded() -> None:
    payload = json.dumps({"inputs": []}).encode() * 100
    reader = _reader()
    zipped = gzip.compress(payload)
    assert bytes(await reader.read(_receiver(zipped[:10], zipped[10:]), str(len(zipped)), "gzip")) == payload
    assert reader.budget.used == len(zipped) + len(payload)
    deflated = zlib.compress(payload)
    assert bytes(await _reader().read(_receiver(deflated), None, "Deflate")) == payload


async def test_a_compression_bomb_stops_at_the_decoded_limit() -> None:
    bomb = gzip.compress(b"\0" * (64 << 20))  # 64 MiB of zeros in ~64 KiB
    reader = _reader(budget=1 << 30, limit=1 << 20)
    with pytest.raises(PayloadTooLargeError, match="decoded request body exceeds the limit of 1048576"):
        await reader.read(_receiver(bomb), str(len(bomb)), "gzip")
    assert reader.reserved <= len(bomb) + (1 << 20) + 1  # it never held more than the limit decoded


@pytest.mark.parametrize("encoding", ["br", "zstd", "compress", "gzip, br", "x" * 500])
async def test_other_encodings_are_415(encoding: str) -> None:
    with pytest.raises(UnsupportedMediaTypeError) as info:
        await _reader().read(_receiver(b"abc"), "3", encoding)
    assert info.value.http_status == 415 and len(info.value.one_line()) < 200


async def test_broken_compressed_bodies_are_400() -> None:
    zipped = gzip.compress(b"hello world" * 10)
    with pytest.raises(UserInputError, match="not valid gzip"):
        await _reader().read(_receiver(b"not gzip at all"), None, "gzip")
    with pytest.raises(UserInputError, match="truncated"):
        await _reader().read(_receiver(zipped[:-8]), None, "gzip")
    with pytest.raises(UserInputError, match="data after its end"):
        await _reader().read(_receiver(zipped + b"junk"), None, "gzip")
