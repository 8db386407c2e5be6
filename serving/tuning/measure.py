"""Measuring one candidate config on a running Triton (the I/O half of `tritium tune`).

- :class:`TemporaryModel` / :class:`LiveModel`: where candidates are loaded. By default a model of its
  own (``<name>__tune``, loaded from file overrides: the version's file and the candidate config), so
  live traffic never sees a candidate; with ``--in-place`` the live model itself, always sent back as
  Triton loaded it with only the candidate's settings changed, and restored at the end.
- :func:`check_answers`: a short warm-up whose every answer is compared with onnxruntime in process,
  sent concurrently so the batcher joins them: a config that batches wrongly cannot win.
- :func:`measure_level`: ``h2load`` at one concurrency for a fixed time, with Triton's statistics
  over the same interval (:class:`TritonStats`: queue vs compute time, executed batch sizes).
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.grpc import model_config_pb2 as mc
from tritonclient.grpc import service_pb2
from tritonclient.utils import InferenceServerException, triton_to_np_dtype

from tritium.errors import RepositoryError, UnavailableError
from tritium.serving.control import TritonControl
from tritium.serving.smoke import datatype, sample_inputs
from tritium.serving.tuning.loadgen import h2load_grpc
from tritium.serving.tuning.search import Point

TUNE_SUFFIX = "__tune"
WARMUP_REQUESTS = 16


@dataclass(frozen=True)
class TritonStats:
    """What Triton counted for one model version over an interval (differences of its statistics)."""

    requests: int  # successful
    failed: int
    inferences: int
    executions: int
    queue_us: float  # mean per request
    compute_input_us: float
    compute_infer_us: float
    compute_output_us: float
    batch_sizes: dict[int, int] = field(default_factory=dict)  # executed batch size -> executions

    @property
    def mean_batch(self) -> float:
        return self.inferences / self.executions if self.executions else float("nan")

    @classmethod
    def between(cls, before: dict, after: dict) -> TritonStats:
        def count(stats: dict, *path: str) -> int:
            for key in path:
                stats = stats.get(key, {}) if isinstance(stats, dict) else {}
            return int(stats or 0)

        def mean_us(name: str) -> float:
            calls = count(after, "inference_stats", name, "count") - count(
                before, "inference_stats", name, "count"
            )
            ns = count(after, "inference_stats", name, "ns") - count(before, "inference_stats", name, "ns")
            return ns / calls / 1000 if calls else float("nan")

        def batches(stats: dict) -> dict[int, int]:
            return {
                int(entry["batch_size"]): int(entry.get("compute_infer", {}).get("count", 0))
                for entry in stats.get("batch_stats", [])
            }

        first, last = batches(before), batches(after)
        return cls(
            requests=count(after, "inference_stats", "success", "count")
            - count(before, "inference_stats", "success", "count"),
            failed=count(after, "inference_stats", "fail", "count")
            - count(before, "inference_stats", "fail", "count"),
            inferences=count(after, "inference_count") - count(before, "inference_count"),
            executions=count(after, "execution_count") - count(before, "execution_count"),
            queue_us=mean_us("queue"),
            compute_input_us=mean_us("compute_input"),
            compute_infer_us=mean_us("compute_infer"),
            compute_output_us=mean_us("compute_output"),
            batch_sizes={
                size: n - first.get(size, 0) for size, n in sorted(last.items()) if n - first.get(size, 0)
            },
        )

    def top_batches(self, n: int = 3) -> str:
        total = sum(self.batch_sizes.values()) or 1
        common = sorted(self.batch_sizes.items(), key=lambda item: -item[1])[:n]
        return ", ".join(f"{size}: {100 * count / total:.0f}%" for size, count in common)

    def as_dict(self) -> dict:
        return {
            "requests": self.requests,
            "failed": self.failed,
            "inferences": self.inferences,
            "executions": self.executions,
            "mean_batch": round(self.mean_batch, 2) if self.executions else None,
            "queue_us": _round(self.queue_us),
            "compute_input_us": _round(self.compute_input_us),
            "compute_infer_us": _round(self.compute_infer_us),
            "compute_output_us": _round(self.compute_output_us),
            "batch_sizes": {str(k): v for k, v in self.batch_sizes.items()},
        }


def _round(value: float) -> float | None:
    return round(value, 1) if value == value else None  # NaN → None in JSON


# --- where candidates are loaded ---


@contextmanager
def _no_interrupts() -> Iterator[None]:
    """Hold Ctrl-C/SIGTERM while the original config is put back, then deliver them."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    previous = {
        sig: signal.signal(sig, lambda signum, _frame: pending.append(signum))
        for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if pending:
            raise KeyboardInterrupt


class TemporaryModel:
    """Candidates as a model of their own, ``<name>__tune``, serving one version's file.

    Loaded with Triton's file overrides (``file:<version>/model.onnx``, plus the generated ``model.py`` on
    the local Python-backend Triton), so the server's repository is never written and a remote server
    needs no file access. Live traffic on ``<name>`` is never touched.
    """

    in_place = False

    def __init__(self, control: TritonControl, live: str, version: int, files: dict[str, bytes]) -> None:
        self.control = control
        self.name = f"{live}{TUNE_SUFFIX}"
        self.version = version
        self.files = files
        self.loaded = False

    def load(self, config: mc.ModelConfig) -> None:
        config = _copy(config)
        config.name = self.name
        config.version_policy.Clear()
        config.version_policy.specific.versions.append(self.version)
        try:
            self.control.load(self.name, config=config, files=self.files)
        except RepositoryError:
            self.loaded = True  # a refused load leaves the name loaded (with the last config), if it was
            raise
        self.loaded = True

    def close(self) -> None:
        if self.loaded:
            with _no_interrupts():
                self.control.discard(self.name)
            self.loaded = False


class LiveModel:
    """Candidates loaded into the live model itself (``--in-place``); the original comes back at the end.

    Every load sends the config Triton reported before the first change (``get_model_config``) with only
    the candidate's settings changed, so the version policy (the A/B arms) stays as it was; without it
    a reload would fall back to serving the latest version only.
    """

    in_place = True

    def __init__(self, control: TritonControl, name: str, version: int, original: mc.ModelConfig) -> None:
        self.control = control
        self.name = name
        self.version = version
        self.original = _copy(original)
        self.changed = False

    def load(self, config: mc.ModelConfig) -> None:
        # A refused config may have disturbed the live model: put the original back then too. A server
        # that could not be asked (unreachable, no model control) changed nothing.
        try:
            self.control.load(self.name, config=config)
        except RepositoryError:
            self.changed = True
            raise
        self.changed = True

    def close(self) -> None:
        """Put the original config back and check Triton serves it; raises if it could not."""
        if not self.changed:
            return
        with _no_interrupts():
            try:
                self.control.load(self.name, config=self.original)
                restored = self.control.model_config(self.name)
            except (RepositoryError, UnavailableError) as exc:
                raise RepositoryError(
                    f"could not restore the original config of '{self.name}': {exc.message}",
                    hint=f"reload it: `tritium models load {self.name} --url {self.control.url}`",
                ) from None
            if restored != self.original:
                raise RepositoryError(
                    f"'{self.name}' came back with a config different from the original",
                    hint=f"reload it: `tritium models load {self.name} --url {self.control.url}`",
                )
            self.changed = False


def _copy(config: mc.ModelConfig) -> mc.ModelConfig:
    out = mc.ModelConfig()
    out.CopyFrom(config)
    return out


# --- answers and load ---


def _inputs(config: mc.ModelConfig, seed: int) -> dict[str, np.ndarray]:
    """One request's worth (batch 1) of distinct inputs: random floats, 0/1 for integer tensors."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for name, template in sample_inputs(config).items():
        if np.issubdtype(template.dtype, np.floating):
            arrays[name] = rng.random(template.shape).astype(template.dtype)
        elif template.dtype == np.bool_:
            arrays[name] = rng.integers(0, 2, template.shape).astype(np.bool_)
        else:
            arrays[name] = rng.integers(0, 2, template.shape).astype(template.dtype)
    return arrays


def _tensors(config: mc.ModelConfig, arrays: dict[str, np.ndarray]) -> list[grpcclient.InferInput]:
    tensors = []
    for spec in config.input:
        tensor = grpcclient.InferInput(spec.name, list(arrays[spec.name].shape), datatype(spec.data_type))
        tensor.set_data_from_numpy(arrays[spec.name])
        tensors.append(tensor)
    return tensors


def check_answers(url: str, model: str, version: int, config: mc.ModelConfig, session) -> str | None:
    """Send a warm-up of distinct requests all at once; None if every answer matches onnxruntime's.

    ``session`` is an onnxruntime InferenceSession of the same file in this process. Returns why not,
    in one line, when an answer is missing, mis-shaped or different (e.g. another request's answer).
    """
    requests = [_inputs(config, seed) for seed in range(WARMUP_REQUESTS)]
    outputs = [spec.name for spec in config.output]
    answers: list = [None] * len(requests)
    done = threading.Semaphore(0)
    client = grpcclient.InferenceServerClient(url)
    try:
        for index, arrays in enumerate(requests):

            def callback(result, error, index=index) -> None:
                answers[index] = error if error is not None else result
                done.release()

            client.async_infer(model, _tensors(config, arrays), callback, model_version=str(version))
        for _ in requests:
            if not done.acquire(timeout=60):
                return "the warm-up requests were not answered within 60 s"
    finally:
        client.close()
    for index, (arrays, answer) in enumerate(zip(requests, answers, strict=True)):
        if isinstance(answer, InferenceServerException):
            return f"warm-up request {index} failed: {' '.join(str(answer.message()).split())[:200]}"
        expected = session.run(outputs, arrays)
        for name, want in zip(outputs, expected, strict=True):
            got = answer.as_numpy(name)
            if got is None or got.shape != want.shape:
                shape = None if got is None else list(got.shape)
                return f"warm-up request {index}: output {name} has shape {shape}, onnxruntime {list(want.shape)}"
            if not _close(got, want):
                error = float(np.max(np.abs(got.astype(np.float64) - want.astype(np.float64))))
                return f"warm-up request {index}: output {name} differs from onnxruntime (max abs error {error:.3g})"
    return None


def _close(got: np.ndarray, want: np.ndarray) -> bool:
    if not np.issubdtype(want.dtype, np.floating):
        return bool(np.array_equal(got, want))
    # Batched and single runs may take different kernels: equal up to float rounding, not bit for bit.
    scale = max(1.0, float(np.max(np.abs(want))) if want.size else 1.0)
    return bool(np.allclose(got, want, rtol=1e-3, atol=1e-3 * scale))


def infer_message(model: str, version: int, config: mc.ModelConfig) -> bytes:
    """One serialized ModelInfer request (batch 1, raw tensors) for h2load to replay."""
    request = service_pb2.ModelInferRequest(model_name=model, model_version=str(version))
    for spec in config.input:
        array = _inputs(config, 0)[spec.name]
        request.inputs.add(name=spec.name, datatype=datatype(spec.data_type), shape=list(array.shape))
        request.raw_input_contents.append(
            np.ascontiguousarray(array, dtype=triton_to_np_dtype(datatype(spec.data_type))).tobytes()
        )
    return request.SerializeToString()


def measure_level(
    control: TritonControl, model: str, version: int, message: bytes, concurrency: int, seconds: float
) -> Point:
    """Drive ``model`` with ``concurrency`` requests in flight for ``seconds``; Triton's stats alongside."""
    before = control.statistics(model, str(version))
    result = h2load_grpc(control.url, message, concurrency, seconds)
    stats = TritonStats.between(before, control.statistics(model, str(version)))
    for _ in range(10):  # Triton counts a request just after answering it: let the count catch up
        if stats.requests >= result.requests:
            break
        time.sleep(0.05)
        stats = TritonStats.between(before, control.statistics(model, str(version)))
    # h2load sees a gRPC failure as HTTP 200, so a 200 Triton did not count as a success is an error.
    # Triton's own failure count also holds the requests h2load abandons in flight when its time is up
    # (at most one per connection): only failures beyond those are the server's.
    unserved = max(0, result.requests - stats.requests)
    errors = result.http_errors + unserved + max(0, stats.failed - concurrency)
    return Point(
        concurrency=concurrency,
        throughput=(result.requests - unserved) / result.seconds if result.seconds else 0.0,
        p50_ms=result.p50_ms,
        p99_ms=result.p99_ms,
        errors=errors,
        stats=stats,
    )
