"""Derive the runtime repository the bundled Triton serves from a canonical model repository.

The bundled ``tritonserver`` has only the Python backend, so each ONNX or TorchScript model of the
canonical repository becomes a Python-backend model of the same name that runs the same files
(linked, never copied or changed) with onnxruntime, torch or OpenVINO. Name, versions, inputs, outputs,
``max_batch_size``, dynamic batching, instance count and version policy are kept; GPU-only
settings (instance kinds, TensorRT optimization) and warmup are dropped. Triton's onnxruntime
backend parameter ``intra_op_thread_count`` is honoured; onnxruntime's thread spinning is off
unless the config sets ``tritium_allow_spinning: "1"``.

Public API: :func:`derive` (a whole repository), :func:`derive_model` (one model, e.g. after the
builder added a version), :func:`runtime_config` (the pure config translation).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from tritium.errors import NotFoundError, RepositoryError

CONFIG_FILE = "config.pbtxt"
BACKEND_MODEL_FILE = "model.py"
TEMPLATE = Path(__file__).parent / "templates" / BACKEND_MODEL_FILE


@dataclass(frozen=True)
class Engine:
    name: str
    default_artifact: str


ENGINES: dict[str, Engine] = {
    "onnxruntime_onnx": Engine("onnxruntime", "model.onnx"),
    "onnxruntime": Engine("onnxruntime", "model.onnx"),
    "pytorch_libtorch": Engine("torchscript", "model.pt"),
    "pytorch": Engine("torchscript", "model.pt"),
    "openvino": Engine("openvino", "model.xml"),  # a backend name: IR model.xml + model.bin
}

_DROPPED_FIELDS = (
    "platform",
    "backend",
    "runtime",
    "default_model_filename",
    "cc_model_filenames",
    "optimization",
    "model_warmup",
)


@dataclass(frozen=True)
class DerivedModel:
    name: str
    engine: str
    versions: tuple[int, ...]


@dataclass(frozen=True)
class SkippedModel:
    name: str
    reason: str


@dataclass
class Derivation:
    models: list[DerivedModel] = field(default_factory=list)
    skipped: list[SkippedModel] = field(default_factory=list)


def read_config(path: Path) -> mc.ModelConfig:
    try:
        return text_format.Parse(path.read_text(), mc.ModelConfig())
    except (OSError, text_format.ParseError) as exc:
        raise RepositoryError(
            f"cannot read {path}: {exc}", hint="rebuild the model with `tritium build`"
        ) from exc


def write_config(config: mc.ModelConfig, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text_format.MessageToString(config))
    os.replace(tmp, path)


def engine_for(config: mc.ModelConfig) -> Engine | None:
    return ENGINES.get(config.platform) or ENGINES.get(config.backend)


def gpu_present() -> bool:
    """Whether this machine has an NVIDIA GPU (the kernel driver lists one); no CUDA library is loaded."""
    gpus = Path("/proc/driver/nvidia/gpus")
    return gpus.is_dir() and any(gpus.iterdir())


def runtime_config(
    canonical: mc.ModelConfig,
    *,
    intra_op_threads: int | None = None,
    versions: Iterable[int] | None = None,
    gpus: bool | None = None,
) -> mc.ModelConfig:
    """The Python-backend config serving ``canonical``'s files; ``versions`` overrides the policy.

    ``gpus``: whether this machine has a GPU (default: :func:`gpu_present`). With one, the
    canonical config's GPU instance groups stay GPU groups, and the generated model runs on that GPU
    (onnxruntime's CUDA provider, checked to be the one used; torch CUDA); without one they become
    CPU groups, as on the official image's CPU-only hosts.
    """
    engine = engine_for(canonical)
    if engine is None:
        platform = canonical.platform or canonical.backend or "<none>"
        raise RepositoryError(
            f"model '{canonical.name}' uses '{platform}', which the local Triton cannot run",
            hint="serve it with --runtime docker (the official image)",
        )
    config = mc.ModelConfig()
    config.CopyFrom(canonical)
    for name in _DROPPED_FIELDS:
        config.ClearField(name)
    config.backend = "python"
    on_gpu = gpu_present() if gpus is None else gpus
    for group in config.instance_group:
        if on_gpu and engine.name != "openvino" and group.kind == mc.ModelInstanceGroup.KIND_GPU:
            continue  # Triton places the instances on the listed GPUs; model.py picks the provider
        group.kind = mc.ModelInstanceGroup.KIND_CPU
        del group.gpus[:]
    if versions is not None:
        config.version_policy.specific.versions[:] = sorted(set(versions))
    canonical_params = {key: value.string_value for key, value in canonical.parameters.items()}
    if intra_op_threads is None:
        intra_op_threads = (
            _thread_count(canonical, canonical_params.get("intra_op_thread_count", "0")) or None
        )
    threads = intra_op_threads if intra_op_threads is not None else default_threads(config)
    spinning = canonical_params.get("tritium_allow_spinning", "0").strip()
    if spinning not in ("0", "1"):
        raise RepositoryError(
            f"model '{canonical.name}': tritium_allow_spinning is {spinning!r}",
            hint='set it to "0" (default) or "1"',
        )
    params = {
        "tritium_engine": engine.name,
        "tritium_artifact": canonical.default_model_filename or engine.default_artifact,
        "tritium_intra_op_threads": str(threads),
        # Spinning intra-op workers keep burning CPU after every run; here they share the cores with
        # Triton's front end and batcher, which measured 2x less stub CPU per request with it off.
        "tritium_allow_spinning": spinning,
    }
    if (
        engine.name == "openvino"
    ):  # the precision the canonical config asks its backend for (empty: the plugin's default)
        params["tritium_inference_precision"] = canonical_params.get("INFERENCE_PRECISION_HINT", "")
    for key, value in params.items():
        config.parameters[key].string_value = value
    return config


def _thread_count(canonical: mc.ModelConfig, text: str) -> int:
    if not re.fullmatch(r"[0-9]+", text.strip(), flags=re.ASCII):
        raise RepositoryError(
            f"model '{canonical.name}': intra_op_thread_count is {text!r}",
            hint="set it to a whole number of threads, or 0 for the default",
        )
    return int(text)


def default_threads(config: mc.ModelConfig) -> int:
    """The cores this process may use (its affinity, e.g. a container's cpuset), shared by the instances."""
    instances = sum(max(group.count, 1) for group in config.instance_group) or 1
    return max(1, len(os.sched_getaffinity(0)) // instances)


def version_dirs(model_dir: Path, artifact: str) -> dict[int, Path]:
    return {
        int(entry.name): entry
        for entry in model_dir.iterdir()
        if entry.is_dir() and entry.name.isdigit() and (entry / artifact).is_file()
    }


def derive_model(
    src_model_dir: Path, dst_model_dir: Path, *, versions: Iterable[int] | None = None
) -> DerivedModel:
    """(Re)derive one model; idempotent, adds new versions and rewrites the config atomically."""
    canonical = read_config(src_model_dir / CONFIG_FILE)
    if not canonical.name:
        canonical.name = src_model_dir.name
    config = runtime_config(canonical, versions=versions)
    artifact = config.parameters["tritium_artifact"].string_value
    found = version_dirs(src_model_dir, artifact)
    if versions is not None:
        missing = sorted(set(versions) - set(found))
        if missing:
            raise NotFoundError(
                f"model '{canonical.name}' has no version {', '.join(map(str, missing))} in {src_model_dir}",
                hint=f"available: {', '.join(map(str, sorted(found))) or 'none'}",
            )
    dst_model_dir.mkdir(parents=True, exist_ok=True)
    template = TEMPLATE.read_bytes()
    for version, source in sorted(found.items()):
        _link_version(source, dst_model_dir / str(version), template)
    write_config(config, dst_model_dir / CONFIG_FILE)
    return DerivedModel(
        canonical.name, config.parameters["tritium_engine"].string_value, tuple(sorted(found))
    )


def _link_version(source: Path, target: Path, template: bytes) -> None:
    staging = target.with_name(f".{target.name}.staging")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    for entry in source.iterdir():
        if entry.is_file():
            (staging / entry.name).symlink_to(entry.resolve())
    (staging / BACKEND_MODEL_FILE).write_bytes(template)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(staging, target)


def model_names(src: Path) -> list[str]:
    if not src.is_dir():
        raise NotFoundError(
            f"no model repository at {src}", hint="run `tritium build` first or pass --repository"
        )
    return sorted(
        entry.name
        for entry in src.iterdir()
        if entry.is_dir() and not entry.name.startswith(".") and (entry / CONFIG_FILE).is_file()
    )


def derive(src: Path, dst: Path, models: Iterable[str] | None = None) -> Derivation:
    """Derive the runtime repository ``dst`` from the canonical repository ``src``.

    Models the local Triton cannot run are listed in ``skipped`` with the reason; ``src`` is only read.
    """
    available = model_names(src)
    wanted = list(models) if models is not None else available
    unknown = sorted(set(wanted) - set(available))
    if unknown:
        raise NotFoundError(
            f"no model {', '.join(unknown)} in {src}", hint=f"available: {', '.join(available) or 'none'}"
        )
    dst.mkdir(parents=True, exist_ok=True)
    result = Derivation()
    for name in wanted:
        try:
            result.models.append(derive_model(src / name, dst / name))
        except RepositoryError as exc:
            result.skipped.append(SkippedModel(name, exc.one_line()))
    return result
