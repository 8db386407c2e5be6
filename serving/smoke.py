"""One inference per served model, with inputs made from its configuration: proof it serves."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.grpc import model_config_pb2 as mc
from tritonclient.utils import InferenceServerException, triton_to_np_dtype

from tritium.errors import UnavailableError

VARIABLE_DIM = 8


@dataclass(frozen=True)
class SmokeResult:
    model: str
    version: str
    outputs: dict[str, tuple[int, ...]]
    latency_ms: float


def datatype(data_type: int) -> str:
    """Triton's wire datatype (``FP32``) for a config enum (``TYPE_FP32``)."""
    return mc.DataType.Name(data_type).removeprefix("TYPE_")


def sample_inputs(config: mc.ModelConfig, batch_size: int = 1) -> dict[str, np.ndarray]:
    """Deterministic inputs matching ``config``: normal floats, ones for integers (valid token ids)."""
    rng = np.random.default_rng(0)
    arrays = {}
    for spec in config.input:
        dims = [VARIABLE_DIM if d < 0 else d for d in spec.dims]
        shape = [batch_size, *dims] if config.max_batch_size > 0 else dims
        dtype = triton_to_np_dtype(datatype(spec.data_type))
        if np.issubdtype(dtype, np.floating):
            arrays[spec.name] = rng.standard_normal(shape).astype(dtype)
        else:
            arrays[spec.name] = np.ones(shape, dtype=dtype)
    return arrays


def infer_once(client: grpcclient.InferenceServerClient, model: str, version: str = "") -> SmokeResult:
    config = client.get_model_config(model, model_version=version).config
    inputs = []
    for name, array in sample_inputs(config).items():
        spec = next(s for s in config.input if s.name == name)
        tensor = grpcclient.InferInput(name, list(array.shape), datatype(spec.data_type))
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    started = time.perf_counter()
    result = client.infer(model, inputs, model_version=version)
    latency_ms = (time.perf_counter() - started) * 1000
    response = result.get_response()
    outputs = {spec.name: tuple(result.as_numpy(spec.name).shape) for spec in config.output}
    return SmokeResult(model, response.model_version, outputs, latency_ms)


def smoke(grpc_url: str) -> list[SmokeResult]:
    """Infer once on every ready model of the server at ``grpc_url``."""
    client = grpcclient.InferenceServerClient(grpc_url)
    try:
        index = client.get_model_repository_index(as_json=True).get("models", [])
        ready = sorted({m["name"] for m in index if m.get("state") == "READY"})
        return [infer_once(client, name) for name in ready]
    except InferenceServerException as exc:
        raise UnavailableError(f"inference on {grpc_url} failed: {exc.message()}") from None
    finally:
        client.close()
