"""Triton ``config.pbtxt`` generation: pure functions from a recipe to a ModelConfig message.

Built with Triton's own protobuf schema (``tritonclient.grpc.model_config_pb2``) and serialized
with ``google.protobuf.text_format``, so every field name and enum is Triton's.
"""

from __future__ import annotations

from collections.abc import Sequence

from google.protobuf import json_format, text_format
from tritonclient.grpc import model_config_pb2 as mc

from tritium.builder.artifacts import OPENVINO_PLATFORM
from tritium.builder.recipe import DType, InputSpec, Recipe, TritonSettings

_KIND = {"cpu": "KIND_CPU", "gpu": "KIND_GPU", "auto": "KIND_AUTO"}


def triton_dtype(dtype: DType) -> str:
    return {"BOOL": "TYPE_BOOL"}.get(dtype.value, f"TYPE_{dtype.value}")


def _dims(shape: Sequence[int | str], batched: bool) -> list[int]:
    dims = shape[1:] if batched else shape
    return [d if isinstance(d, int) else -1 for d in dims]


def _tensor(name: str, dtype: DType, shape: Sequence[int | str], batched: bool) -> dict:
    return {"name": name, "data_type": triton_dtype(dtype), "dims": _dims(shape, batched)}


def _set_batching(config: dict, settings: TritonSettings) -> None:
    config["max_batch_size"] = settings.max_batch_size
    if settings.max_batch_size > 0 and settings.max_queue_delay_microseconds is not None:
        config["dynamic_batching"] = {"max_queue_delay_microseconds": settings.max_queue_delay_microseconds}


def _set_instance_groups(config: dict, settings: TritonSettings) -> None:
    groups = []
    for group in settings.instance_groups:
        entry: dict = {"count": group.count, "kind": _KIND[group.kind]}
        if group.gpus:
            entry["gpus"] = group.gpus
        groups.append(entry)
    config["instance_group"] = groups


def _set_warmup(config: dict, inputs: Sequence[InputSpec], batched: bool, dims: dict[str, int]) -> None:
    warm_inputs = {}
    for spec in inputs:
        concrete = [
            d if isinstance(d, int) else dims.get(d, 16) for d in (spec.shape[1:] if batched else spec.shape)
        ]
        warm_inputs[spec.name] = {"data_type": triton_dtype(spec.dtype), "dims": concrete, "zero_data": True}
    config["model_warmup"] = [{"name": "zeros_batch1", "batch_size": 1, "inputs": warm_inputs}]


def _set_accelerator(config: dict, settings: TritonSettings, batched: bool) -> None:
    """onnxruntime's TensorRT execution accelerator (official image, GPU instances).

    Engines are built on the GPU at load, cached under ``tensorrt_engine_cache/<model>`` so a
    reload does not rebuild them, and the warm-up at the largest batch makes the load build the
    engine for the whole batch range instead of the first large request.
    """
    if settings.gpu_accelerator != "tensorrt":
        return
    parameters = {
        "precision_mode": settings.tensorrt_precision,
        "max_workspace_size_bytes": str(settings.tensorrt_workspace_bytes),
    }
    if settings.tensorrt_engine_cache:
        parameters["trt_engine_cache_enable"] = "1"
        parameters["trt_engine_cache_path"] = f"{settings.tensorrt_engine_cache.rstrip('/')}/{config['name']}"
    config["optimization"] = {
        "execution_accelerators": {
            "gpu_execution_accelerator": [{"name": "tensorrt", "parameters": parameters}]
        }
    }
    warmups = config.get("model_warmup", [])
    if batched and warmups and settings.max_batch_size > 1:
        largest = dict(
            warmups[0], name=f"zeros_batch{settings.max_batch_size}", batch_size=settings.max_batch_size
        )
        config["model_warmup"] = [*warmups, largest]


def _runtime(platform: str, recipe: Recipe) -> dict:
    """Which Triton backend runs the model: a platform, or (OpenVINO) a backend with its parameters."""
    if platform != OPENVINO_PLATFORM:
        return {"platform": platform}
    threads = recipe.profile.threads
    parameters = {
        # latency, one stream per instance: Triton's instances and batcher supply the concurrency
        "PERFORMANCE_HINT": {"string_value": "LATENCY"},
        "NUM_STREAMS": {"string_value": "1"},
    }
    if threads:
        parameters["INFERENCE_NUM_THREADS"] = {"string_value": str(threads)}
    # one precision per model (the recipe refuses OpenVINO variants that disagree); f32 is what the
    # gate judged, where the plugin's own default would be bf16 on CPUs that have it
    if openvino_precision(recipe) == "f32":
        parameters["INFERENCE_PRECISION_HINT"] = {"string_value": "f32"}
    return {"backend": "openvino", "default_model_filename": "model.xml", "parameters": parameters}


def openvino_precision(recipe: Recipe) -> str:
    precisions = {v.inference_precision.value for v in recipe.variants if v.kind.startswith("openvino-")}
    return precisions.pop() if len(precisions) == 1 else "f32"


def build_config(
    recipe: Recipe,
    *,
    name: str,
    platform: str,
    versions: Sequence[int],
    output_dtypes: dict[str, DType],
    output_shapes: dict[str, Sequence[int | str]],
) -> mc.ModelConfig:
    """The ModelConfig for one Triton model serving ``versions``."""
    settings = recipe.triton
    batched = settings.max_batch_size > 0
    config: dict = {
        "name": name,
        **_runtime(platform, recipe),
        "input": [_tensor(s.name, s.dtype, s.shape, batched) for s in recipe.inputs],
        "output": [
            _tensor(o.name, output_dtypes[o.name], output_shapes[o.name], batched) for o in recipe.outputs
        ],
        "version_policy": {"specific": {"versions": sorted(versions)}},
    }
    _set_batching(config, settings)
    _set_instance_groups(config, settings)
    if platform == OPENVINO_PLATFORM:  # OpenVINO is the CPU runtime here: its instances are CPU ones
        for group in config["instance_group"]:
            group["kind"] = "KIND_CPU"
            group.pop("gpus", None)
    if settings.warmup:
        _set_warmup(config, recipe.inputs, batched, recipe.profile.fixed_dims)
    if platform != OPENVINO_PLATFORM:  # execution accelerators are onnxruntime's and libtorch's
        _set_accelerator(config, settings, batched)
    if recipe.description:
        config.setdefault("parameters", {})["description"] = {"string_value": recipe.description[:200]}
    return json_format.ParseDict(config, mc.ModelConfig())


def to_pbtxt(config: mc.ModelConfig) -> str:
    text = text_format.MessageToString(config)
    if config.max_batch_size == 0:  # protobuf drops zero fields; Triton wants it explicit
        text = text.replace(
            f'platform: "{config.platform}"\n', f'platform: "{config.platform}"\nmax_batch_size: 0\n', 1
        )
    return text


def parse_pbtxt(text: str) -> mc.ModelConfig:
    return text_format.Parse(text, mc.ModelConfig())


def versions_to_serve(existing: Sequence[int], keep: int) -> list[int]:
    return sorted(existing)[-keep:]
