"""The first step of every build: the verified ONNX export of a PyTorch model, or the checked (and
normalized) ONNX source. Every ONNX variant derives from what this step leaves."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from tritium.builder import export as exporting
from tritium.builder import normalize
from tritium.builder.artifacts import ONNX_PLATFORM, Artifact, StepRecord
from tritium.builder.recipe import DType, LoadedRecipe
from tritium.builder.runners import Runner
from tritium.builder.sources import SourceModel
from tritium.errors import ExportError

EXPORT = "export"


@dataclass(frozen=True)
class ExportResult:
    artifact: Artifact  # variant "export": the FP32 model every ONNX technique starts from
    checks: tuple[dict, ...]  # the shapes the export was verified at, with the largest difference
    output_dtypes: dict[str, DType]
    output_shapes: dict[str, list[int | str]]


def describe(source: SourceModel) -> str:
    if source.is_torch:
        return "export to ONNX and verify at several shapes"
    return "check the ONNX model (and normalize an old IR)"


def run_export(
    loaded: LoadedRecipe, source: SourceModel, reference: Runner, work: Path, threads: int | None
) -> ExportResult:
    recipe = loaded.recipe
    records: list[StepRecord] = []
    checks: list[dict] = []
    if source.is_torch:
        path = work / "export.onnx"
        started = time.perf_counter()
        exporting.export_onnx(source.module, recipe, path)
        exporting.check_declared_axes(path, recipe)
        checks = exporting.verify_against_source(path, reference, recipe, threads)
        records.append(
            StepRecord(
                "export-onnx",
                {
                    "exporter": "torch.onnx (TorchScript-based)",
                    "opset": recipe.export.opset,
                    "dynamic_axes": {s.name: s.dynamic_axes for s in recipe.inputs},
                    "verified_shapes": checks,
                },
                time.perf_counter() - started,
            )
        )
    else:
        normalized = normalize.normalize_onnx(source.onnx_path, recipe, work / "normalized.onnx", threads)
        path = normalized.path
        records.extend(normalized.steps)
    dtypes, shapes = output_types(path)
    artifact = Artifact(EXPORT, EXPORT, path, ONNX_PLATFORM, tuple(records), parent="source")
    return ExportResult(artifact, tuple(checks), dtypes, shapes)


def normalize_notice(result: ExportResult, source: SourceModel) -> str | None:
    for step in result.artifact.steps:
        if step.name == normalize.NORMALIZE_STEP:
            return (
                f"normalized {source.onnx_path.name}: {step.params['removed_initializer_inputs']} weights "
                f"were listed as graph inputs (IR {step.params['ir_version']['from']}); "
                f"IR {step.params['ir_version']['to']}, verified"
            )
    return None


def output_types(onnx_path: Path) -> tuple[dict[str, DType], dict[str, list[int | str]]]:
    import onnx
    from onnx import helper

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    dtypes, shapes = {}, {}
    for output in graph.output:
        tensor = output.type.tensor_type
        try:
            dtypes[output.name] = DType.from_numpy(helper.tensor_dtype_to_np_dtype(tensor.elem_type))
        except (ValueError, KeyError, TypeError):
            raise ExportError(
                f"output {output.name!r} has element type {onnx.TensorProto.DataType.Name(tensor.elem_type)}, "
                "which Tritium cannot serve",
                hint="return a numeric or boolean tensor from the model",
            ) from None
        shapes[output.name] = [
            d.dim_value if d.HasField("dim_value") else (d.dim_param or "dynamic") for d in tensor.shape.dim
        ]
    return dtypes, shapes
