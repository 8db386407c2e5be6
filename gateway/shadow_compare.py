"""How a shadow target's answers agree with the primary's on the same requests.

A route's shadow may ask for a comparison (`shadow.compare: top1 | cosine`, on `shadow.output` or
the first output): for each mirrored request that both answered, the gateway decodes both answers
(off the client's path, in the shadow's task) and scores every row of the batch — 1 or 0 for the
same top-1 class, or the cosine similarity of the two rows. Scores add up per second and arm like
the outcome windows, so a release can stop a candidate that disagrees with stable before any
client sees it (`GET /admin/routes/{model}` shows the shadow's agreement since it was set).

Decoding: REST answers are JSON (`data` flat or nested) or Triton's binary-tensor extension (a JSON
header of `Inference-Header-Content-Length` bytes, then each output's bytes); gRPC answers carry
`raw_output_contents` or typed `contents`.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from enum import Enum

import numpy as np

from tritium.gateway.stats import SecondWindows

NUMPY_TYPES = {
    "BOOL": np.bool_, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64,
    "INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64, "FP16": np.float16,
    "FP32": np.float32, "FP64": np.float64,
}  # fmt: skip
_GRPC_CONTENTS = {
    "BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
    "INT64": "int64_contents", "UINT8": "uint_contents", "UINT16": "uint_contents", "UINT32": "uint_contents",
    "UINT64": "uint64_contents", "FP32": "fp32_contents", "FP64": "fp64_contents",
}  # fmt: skip


class Agreement(str, Enum):
    TOP1 = "top1"  # the same class (argmax of the last axis) in every row
    COSINE = "cosine"  # the cosine similarity of the two rows


class Undecodable(ValueError):
    """An answer the comparison cannot read (not counted as agreement or disagreement)."""


_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


def rest_outputs(
    body: bytes, header_length: str | None, encoding: str | None = None, limit: int = 64 << 20
) -> dict[str, np.ndarray]:
    """The output tensors of a KServe v2 REST answer (JSON or binary-tensor extension), decompressed
    first when Triton compressed it for a client that accepts gzip (at most `limit` bytes)."""
    if encoding and encoding != "identity":
        if encoding not in _WBITS:
            raise Undecodable(f"the answer is {encoding}-encoded")
        decoder = zlib.decompressobj(_WBITS[encoding])
        try:
            body = decoder.decompress(body, limit)
        except zlib.error as exc:
            raise Undecodable(f"the answer is not valid {encoding}: {exc}") from None
        if decoder.unconsumed_tail:
            raise Undecodable(f"the answer decompresses to more than {limit} bytes")
    try:
        length = int(header_length) if header_length else len(body)
        document = json.loads(body[:length])
        outputs, offset = {}, length
        for output in document.get("outputs", []):
            dtype = NUMPY_TYPES[output["datatype"]]
            shape = [int(d) for d in output["shape"]]
            size = (output.get("parameters") or {}).get("binary_data_size")
            if size is not None:
                array = np.frombuffer(body[offset : offset + int(size)], dtype=dtype)
                offset += int(size)
            else:
                array = np.asarray(output["data"], dtype=dtype)
            outputs[output["name"]] = array.reshape(shape)
        return outputs
    except (KeyError, ValueError, TypeError) as exc:
        raise Undecodable(f"cannot read the answer's outputs: {exc}") from None


def grpc_outputs(response: object) -> dict[str, np.ndarray]:
    """The output tensors of a ModelInferResponse."""
    try:
        outputs = {}
        raw = list(response.raw_output_contents)  # type: ignore[attr-defined]
        for index, output in enumerate(response.outputs):  # type: ignore[attr-defined]
            dtype = NUMPY_TYPES[output.datatype]
            if raw:
                array = np.frombuffer(raw[index], dtype=dtype)
            else:
                array = np.asarray(getattr(output.contents, _GRPC_CONTENTS[output.datatype]), dtype=dtype)
            outputs[output.name] = array.reshape(list(output.shape))
        return outputs
    except (KeyError, ValueError, IndexError) as exc:
        raise Undecodable(f"cannot read the answer's outputs: {exc}") from None


def row_scores(
    primary: dict[str, np.ndarray], shadow: dict[str, np.ndarray], how: Agreement, output: str | None
) -> np.ndarray:
    """One score per row of the batch: 1/0 for top-1, the cosine similarity for cosine."""
    name = output or next(iter(primary), None)
    if name is None or name not in primary or name not in shadow:
        raise Undecodable(f"output {name!r} is not in both answers")
    a, b = primary[name].astype(np.float64), shadow[name].astype(np.float64)
    if a.shape != b.shape:
        raise Undecodable(f"output {name!r} has shape {list(a.shape)} and {list(b.shape)}")
    rows = a.reshape(a.shape[0] if a.ndim > 1 else 1, -1)
    others = b.reshape(rows.shape)
    if how is Agreement.TOP1:
        return (rows.argmax(axis=1) == others.argmax(axis=1)).astype(np.float64)
    norms = np.linalg.norm(rows, axis=1) * np.linalg.norm(others, axis=1)
    dots = (rows * others).sum(axis=1)
    return np.where(
        norms > 0, dots / np.where(norms > 0, norms, 1.0), (rows == others).all(axis=1).astype(float)
    )


@dataclass(slots=True)
class AgreementCounts:
    """Agreement of one shadow target with its primary, in one second (or a window, added up)."""

    rows: int = 0
    score_sum: float = 0.0
    undecodable: int = 0

    def add(self, other: AgreementCounts) -> None:
        self.rows += other.rows
        self.score_sum += other.score_sum
        self.undecodable += other.undecodable

    @property
    def mean(self) -> float | None:
        return self.score_sum / self.rows if self.rows else None


def agreement_windows(retention_s: int = 3600) -> SecondWindows[AgreementCounts]:
    """Per-second agreement counts per (model, shadow alias)."""
    return SecondWindows(AgreementCounts, retention_s)


def record_scores(counts: AgreementCounts, scores: np.ndarray | None) -> None:
    if scores is None:
        counts.undecodable += 1
    else:
        counts.rows += len(scores)
        counts.score_sum += float(scores.sum())
