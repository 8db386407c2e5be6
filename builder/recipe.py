"""The build recipe: a YAML file validated by pydantic, every error naming the field.

Relative paths in a recipe are resolved against the recipe's own folder, so a recipe and its
artifacts can move together.
"""

from __future__ import annotations

import hashlib
import re
from enum import Enum
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tritium.errors import RecipeError

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")
_FACTORY = r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DType(str, Enum):
    """Tensor element types, spelled as Triton spells them (``TYPE_`` prefix dropped)."""

    FP64 = "FP64"
    FP32 = "FP32"
    FP16 = "FP16"
    INT64 = "INT64"
    INT32 = "INT32"
    INT16 = "INT16"
    INT8 = "INT8"
    UINT64 = "UINT64"
    UINT32 = "UINT32"
    UINT16 = "UINT16"
    UINT8 = "UINT8"
    BOOL = "BOOL"

    @property
    def numpy(self) -> str:
        return "bool" if self is DType.BOOL else self.value.replace("FP", "float").lower()

    @classmethod
    def from_numpy(cls, dtype: object) -> DType:
        import numpy as np

        name = np.dtype(dtype).name
        for member in cls:
            if member.numpy == name:
                return member
        raise ValueError(f"no Triton type for numpy dtype {name}")


Dim = int | str
"""A dimension: a fixed size, or the name of a dynamic axis (``batch``, ``sequence``)."""


class InputSpec(_Strict):
    name: str
    dtype: DType
    shape: list[Dim] = Field(min_length=1, description="Full shape, batch axis first, e.g. [batch, 1, 8, 8]")
    range: tuple[float, float] | None = Field(
        default=None, description="Example value range [low, high) used to make export and profiling inputs"
    )

    @field_validator("shape")
    @classmethod
    def _dims(cls, shape: list[Dim]) -> list[Dim]:
        for dim in shape:
            if isinstance(dim, int) and dim < 1:
                raise ValueError(f"fixed dims must be >= 1, got {dim}")
            if isinstance(dim, str) and not _NAME.match(dim):
                raise ValueError(f"dynamic dim names must be identifiers, got {dim!r}")
        return shape

    @property
    def dynamic_axes(self) -> dict[int, str]:
        return {i: d for i, d in enumerate(self.shape) if isinstance(d, str)}


class OutputSpec(_Strict):
    name: str


class TorchFactorySource(_Strict):
    """A PyTorch model built by ``package.module:function`` (optionally loading a state dict)."""

    kind: Literal["pytorch"] = "pytorch"
    factory: str = Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
    state_dict: Path | None = None
    kwargs: dict[str, object] = Field(default_factory=dict)


class TorchScriptSource(_Strict):
    kind: Literal["torchscript"] = "torchscript"
    path: Path


class OnnxSource(_Strict):
    kind: Literal["onnx"] = "onnx"
    path: Path


Source = Annotated[TorchFactorySource | TorchScriptSource | OnnxSource, Field(discriminator="kind")]


class NpzDataset(_Strict):
    """An ``.npz`` with one array per model input (named like the inputs) and optional labels."""

    kind: Literal["npz"] = "npz"
    path: Path
    labels: str | None = Field(default="labels", description="Array holding the labels; null for none")
    batch_size: int = Field(default=64, ge=1)
    limit: int | None = Field(default=None, ge=1, description="Use at most this many samples")


class FactoryDataset(_Strict):
    """A ``package.module:function`` returning an iterable of ``(inputs: dict, labels | None)``."""

    kind: Literal["factory"] = "factory"
    factory: str = Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
    kwargs: dict[str, object] = Field(default_factory=dict)


Dataset = Annotated[NpzDataset | FactoryDataset, Field(discriminator="kind")]


class MetricName(str, Enum):
    TOP1 = "top1"  # accuracy of argmax against integer labels
    COSINE = "cosine"  # mean cosine similarity of outputs to the baseline's outputs
    MAX_ABS_ERROR = "max_abs_error"  # max |output - baseline output| (lower is better)
    NEIGHBOR_TOP1 = "neighbor_top1"  # retrieval: nearest other sample shares the label


class MetricCheck(_Strict):
    metric: MetricName
    budget: float = Field(ge=0, description="Largest allowed drop vs the baseline (absolute)")
    output: str | None = Field(default=None, description="Output to score; default: the first output")


class ValidationSpec(_Strict):
    dataset: Dataset
    metric: MetricName
    checks: list[MetricCheck] = Field(
        default_factory=list, description="More metrics every variant must keep within their budgets"
    )
    output: str | None = None


class CalibrationMethod(str, Enum):
    MINMAX = "minmax"
    ENTROPY = "entropy"
    PERCENTILE = "percentile"


class GraphOptimization(str, Enum):
    NONE = "none"
    BASIC = "basic"  # ORT basic level: constant folding, redundant nodes; standard ONNX ops only
    TRANSFORMER = "transformer"  # ORT transformers optimizer: fused Attention/LayerNorm/Gelu


class Objective(str, Enum):
    """What a variant is for; the performance rule checks it against the FP32 export."""

    LATENCY = "latency"  # must not be slower than the FP32 export (beyond performance.tolerance)
    SIZE = "size"  # must be smaller than the FP32 export; speed not judged (FP16 on a CPU, pruning)
    NONE = "none"  # no performance rule (TorchScript: a variant for another runtime)


class _Variant(_Strict):
    name: str | None = Field(default=None, description="Variant name in reports and lineage")
    objective: Objective = Objective.LATENCY
    parent: str | None = Field(
        default=None,
        description="Start from this earlier variant's model (e.g. INT8 on a pruned model) instead of the "
        "technique's default; fails when that variant is not accepted",
    )

    @field_validator("name")
    @classmethod
    def _name(cls, name: str | None) -> str | None:
        if name is not None and not _NAME.match(name):
            raise ValueError("use letters, digits, '.', '_' or '-' (max 64)")
        return name


class OnnxFp32Variant(_Variant):
    kind: Literal["onnx-fp32"] = "onnx-fp32"
    optimization: GraphOptimization = GraphOptimization.BASIC
    num_heads: int | None = Field(default=None, ge=1, description="For the transformer optimizer")
    hidden_size: int | None = Field(default=None, ge=1, description="For the transformer optimizer")
    model_type: str = "bert"

    @model_validator(mode="after")
    def _transformer_needs_shape(self) -> OnnxFp32Variant:
        if self.optimization is GraphOptimization.TRANSFORMER and not (self.num_heads and self.hidden_size):
            raise ValueError("optimization 'transformer' needs num_heads and hidden_size")
        return self


class AccuracyControl(_Strict):
    """Keep the quantizable nodes that cost the most accuracy in FP32, until every metric is within budget.

    The search scores candidates on ``dataset``, or, without one, on one validation sample in four
    that the gate then does not score: the gate judges the result on data the search never saw.
    """

    max_excluded_nodes: int = Field(ge=1, le=10_000, description="Keep at most this many nodes in FP32")
    max_seconds: float | None = Field(
        default=None, gt=0, description="Stop the search after this long (the best model so far is gated)"
    )
    dataset: Dataset | None = Field(
        default=None,
        description="Where the search scores; default: a quarter of the validation set, held out",
    )
    confirm: int = Field(
        default=4,
        ge=1,
        le=1000,
        description="How many of the candidates the cheap proxy ranks highest are confirmed on the metric",
    )


class OnnxInt8DynamicVariant(_Variant):
    kind: Literal["onnx-int8-dynamic"] = "onnx-int8-dynamic"
    per_channel: bool = False
    reduce_range: bool = False
    accuracy_control: AccuracyControl | None = None


class CalibrationSpec(_Strict):
    dataset: Dataset
    method: CalibrationMethod = CalibrationMethod.MINMAX
    samples: int = Field(default=256, ge=1)
    percentile: float = Field(default=99.999, gt=0, le=100)


class OnnxInt8StaticVariant(_Variant):
    kind: Literal["onnx-int8-static"] = "onnx-int8-static"
    calibration: CalibrationSpec
    per_channel: bool = True
    op_types: list[Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9]*$")]] | None = Field(
        default=None,
        min_length=1,
        description="Quantize only these ONNX op types (e.g. [MatMul]); default: every type onnxruntime can",
    )
    accuracy_control: AccuracyControl | None = None


class OnnxFp16Variant(_Variant):
    kind: Literal["onnx-fp16"] = "onnx-fp16"
    # FP16 weights halve the file; on a CPU without FP16 arithmetic it is not faster, so by
    # default it is judged on size, not latency.
    objective: Objective = Objective.SIZE


class QatInt8Variant(_Variant):
    """Quantization-aware training: fake-quant fine-tuning from the FP32 weights (the recipe's ``training``)."""

    kind: Literal["qat-int8"] = "qat-int8"
    per_channel: bool = Field(default=True, description="Weights per output channel (activations per tensor)")
    epochs: int | None = Field(default=None, ge=1, le=100_000, description="Overrides training.epochs")
    learning_rate: float | None = Field(
        default=None, gt=0, le=10, description="Overrides training.learning_rate"
    )


class _Tuning(_Strict):
    """Overrides of the recipe's ``training`` section for one variant."""

    epochs: int | None = Field(default=None, ge=1, le=100_000, description="Overrides training.epochs")
    learning_rate: float | None = Field(
        default=None, gt=0, le=10, description="Overrides training.learning_rate"
    )


class PruneUnstructuredVariant(_Variant, _Tuning):
    """Global magnitude pruning of every Conv/Linear weight to ``sparsity``, gradually over the
    fine-tuning epochs (torch.nn.utils.prune), the masks then made permanent. Dense CPU kernels run
    zeros as fast as any weight, so what it buys is a file that compresses: judged on size."""

    kind: Literal["prune-unstructured"] = "prune-unstructured"
    objective: Objective = Objective.SIZE
    # In (0, 1); checked by the step (builder/steps/prune_unstructured.py), not here, so that a bad value
    # fails this variant alone and the recipe's other variants still build.
    sparsity: float = Field(
        allow_inf_nan=False, description="Fraction of the weights set to zero, in (0, 1), e.g. 0.5 or 0.9"
    )
    schedule: Literal["gradual", "one-shot"] = Field(
        default="gradual",
        description="gradual: the sparsity rises over the epochs (cubic, Zhu & Gupta 2017); one-shot: all "
        "at once before fine-tuning",
    )


class PruneStructuredVariant(_Variant, _Tuning):
    """Channels/filters (conv nets), FFN neurons and attention heads (transformers) removed physically
    with torch-pruning's dependency graph, then fine-tuned: a smaller dense model."""

    kind: Literal["prune-structured"] = "prune-structured"
    # In (0, 1); checked by the step, so a bad value fails this variant alone (like sparsity above).
    amount: float = Field(
        allow_inf_nan=False, description="Fraction of the channels (or neurons) removed, in (0, 1)"
    )
    scope: Literal["per-layer", "global"] = Field(
        default="per-layer",
        description="per-layer: every layer loses 'amount'; global: ranked across layers (uneven)",
    )
    ignored_layers: list[str] = Field(
        default_factory=list,
        description="Module names, name prefixes or globs ('*.attention.*') left whole, e.g. the hidden-size "
        "layers of a transformer",
    )
    heads: bool = Field(
        default=False,
        description="Transformers: also remove whole attention heads ('amount' of each layer's heads; the "
        "query/key/value layers of modules with num_attention_heads), keeping the head size",
    )


class StudentSpec(_Strict):
    factory: str | None = Field(
        default=None,
        pattern=_FACTORY,
        description="module:function building the student; default: the source's",
    )
    kwargs: dict[str, object] = Field(
        default_factory=dict, description="Arguments for the factory, e.g. {width: 8} for a narrower model"
    )


class DistillVariant(_Variant, _Tuning):
    """Knowledge distillation: a smaller student trained on the teacher's (the source's) outputs. A
    control (the same student, same data, no teacher) is trained beside it and reported."""

    kind: Literal["distill"] = "distill"
    student: StudentSpec
    temperature: float = Field(default=4.0, gt=0, le=100, description="Softens both logit distributions")
    alpha: float = Field(
        default=0.7,
        ge=0,
        le=1,
        description="Weight of the teacher's soft targets; 1 - alpha: the hard labels",
    )
    control: bool = Field(
        default=True, description="Also train the student without the teacher and report it"
    )
    labelled: int | None = Field(
        default=None,
        ge=1,
        description="Keep the labels of only the first N training samples: the rest is an unlabelled transfer "
        "set only the teacher can teach from (the control trains on the N labelled ones)",
    )


class OpenVinoPrecision(str, Enum):
    """How OpenVINO's CPU plugin computes (its ``INFERENCE_PRECISION_HINT``)."""

    F32 = "f32"  # exact: what the ONNX export computes
    AUTO = "auto"  # the plugin's default: bf16 where the CPU has it (AVX-512 BF16, AMX), f32 elsewhere


class OpenVinoFp32Variant(_Variant):
    """The verified ONNX export converted to OpenVINO IR, run by OpenVINO's CPU plugin."""

    kind: Literal["openvino-fp32"] = "openvino-fp32"
    inference_precision: OpenVinoPrecision = OpenVinoPrecision.F32


class OpenVinoInt8Variant(_Variant):
    """OpenVINO IR quantized to INT8 by NNCF's post-training quantization on a calibration set."""

    kind: Literal["openvino-int8"] = "openvino-int8"
    calibration: CalibrationSpec
    model_type: Literal["transformer"] | None = Field(
        default=None, description="'transformer': NNCF's transformer scheme (keeps sensitive ops in FP)"
    )
    preset: Literal["performance", "mixed"] | None = Field(
        default=None,
        description="NNCF preset: symmetric (performance) or asymmetric activations (mixed); default NNCF's "
        "choice, mixed for transformers (minilm: cosine 0.993 with mixed, 0.984 with performance)",
    )
    smooth_quant: bool = Field(
        default=True,
        description="NNCF's SmoothQuant (on by default for transformers); minilm kept cosine 0.993 without "
        "it, 0.982 with it",
    )
    inference_precision: OpenVinoPrecision = Field(
        default=OpenVinoPrecision.F32, description="Precision of the ops left unquantized"
    )


class TorchScriptVariant(_Variant):
    kind: Literal["torchscript"] = "torchscript"
    objective: Objective = Objective.NONE
    method: Literal["trace", "script"] = "trace"


Variant = Annotated[
    OnnxFp32Variant
    | OnnxInt8DynamicVariant
    | OnnxInt8StaticVariant
    | OnnxFp16Variant
    | TorchScriptVariant
    | QatInt8Variant
    | PruneUnstructuredVariant
    | PruneStructuredVariant
    | DistillVariant
    | OpenVinoFp32Variant
    | OpenVinoInt8Variant,
    Field(discriminator="kind"),
]


def variant_name(variant: _Variant) -> str:
    if variant.name:
        return variant.name
    name = variant.kind.removeprefix("onnx-")
    if getattr(variant, "per_channel", False) and variant.kind == "onnx-int8-dynamic":
        name += "-per-channel"
    if getattr(variant, "accuracy_control", None) is not None:
        name += "-controlled"
    if isinstance(variant, PruneUnstructuredVariant):
        name += f"-{round(variant.sparsity * 100):g}"
    if isinstance(variant, PruneStructuredVariant):
        name += f"-{round(variant.amount * 100):g}"
    if variant.parent is not None:
        name = f"{variant.parent}.{name}"
    return name


class LossName(str, Enum):
    CROSS_ENTROPY = "cross_entropy"  # against the dataset's integer labels
    MSE = "mse"  # mean squared error to the FP32 baseline's outputs (no labels needed)
    COSINE = "cosine"  # 1 - cosine similarity to the FP32 baseline's outputs (embeddings)


class TrainingSpec(_Strict):
    """Fine-tuning, shared by every technique that trains (quantization-aware training; pruning and
    distillation next): a dataset and a loss, or ``factory`` for your own loop."""

    dataset: Dataset | None = Field(
        default=None, description="Training samples (npz with labels, or a factory)"
    )
    loss: LossName | None = None
    output: str | None = Field(
        default=None, description="Output the loss applies to; default: the first output"
    )
    epochs: int = Field(default=3, ge=1, le=100_000)
    learning_rate: float = Field(default=1e-4, gt=0, le=10)
    batch_size: int = Field(default=64, ge=1, le=1_000_000)
    seed: int = Field(default=0, ge=0)
    factory: str | None = Field(
        default=None,
        pattern=_FACTORY,
        description="module:function called as function(model, **kwargs) to train the model in place",
    )
    kwargs: dict[str, object] = Field(default_factory=dict, description="Keyword arguments for the factory")

    @model_validator(mode="after")
    def _loop(self) -> TrainingSpec:
        if self.factory is None and (self.dataset is None or self.loss is None):
            raise ValueError("give 'dataset' and 'loss', or a 'factory' (module:function) with your own loop")
        if self.factory is not None and (self.dataset is not None or self.loss is not None):
            raise ValueError("'factory' runs your own loop: leave 'dataset' and 'loss' out")
        return self


class InstanceGroup(_Strict):
    count: int = Field(default=1, ge=1)
    kind: Literal["cpu", "gpu", "auto"] = "cpu"
    gpus: list[int] | None = None


DEFAULT_MAX_BATCH_SIZE = 32


class TritonSettings(_Strict):
    max_batch_size: int = Field(
        default=DEFAULT_MAX_BATCH_SIZE,
        ge=0,
        description="0 = no batching; default 32, or 0 when an input's first dim is fixed",
    )
    max_queue_delay_microseconds: int | None = Field(
        default=500, ge=0, description="Dynamic batching queue delay; null disables dynamic batching"
    )
    instance_groups: list[InstanceGroup] = Field(default_factory=lambda: [InstanceGroup()])
    warmup: bool = True
    serve_versions: int = Field(default=8, ge=1, description="How many latest versions Triton keeps loaded")
    gpu_accelerator: Literal["none", "tensorrt"] = Field(
        default="none", description="Ask Triton's onnxruntime backend for TensorRT on a GPU node"
    )
    tensorrt_precision: Literal["FP32", "FP16", "INT8"] = "FP16"
    tensorrt_workspace_bytes: int = Field(
        default=1 << 30, ge=1 << 20, description="TensorRT builder workspace"
    )
    tensorrt_engine_cache: str | None = Field(
        default="/tmp/tritium-trt-cache",
        description="Folder in the Triton container where engines are cached across loads (per model); "
        "null: rebuilt at every load",
    )


class ProfileSettings(_Strict):
    batch_sizes: list[Annotated[int, Field(ge=1)]] | None = Field(
        default=None, description="Batch sizes to profile; default powers of two up to max_batch_size"
    )
    fixed_dims: dict[str, int] = Field(
        default_factory=dict,
        description="Size of each dynamic non-batch axis when profiling, e.g. sequence: 128",
    )
    warmup: int = Field(default=2, ge=0)
    iterations: int = Field(default=20, ge=1)
    max_seconds_per_point: float = Field(default=3.0, gt=0)
    threads: int | None = Field(default=None, ge=1, description="Intra-op threads; default all cores")
    device: Literal["cpu", "cuda"] = Field(
        default="cpu",
        description="Where variants are validated and profiled: cuda uses onnxruntime's CUDA provider and "
        "torch CUDA (the build stops at once where there is none)",
    )


class ExportSettings(_Strict):
    opset: int = Field(default=17, ge=11)
    verify_batch_sizes: list[Annotated[int, Field(ge=1)]] = Field(
        default_factory=lambda: [1, 3, 8], min_length=1
    )
    verify_dims: dict[str, list[int]] = Field(
        default_factory=dict,
        description="Sizes to verify for each dynamic non-batch axis, e.g. sequence: [7, 32]",
    )
    atol: float = Field(default=1e-4, gt=0)
    rtol: float = Field(default=1e-3, ge=0)


class PerformanceSettings(_Strict):
    """The rule next to the accuracy budget: a latency variant must not be slower than the FP32 export."""

    # 0.3: three times the worst deviation two measurements in a row showed between a model and
    # itself, on a 2-core machine running twice its cores' worth of other work (docs/model-repository.md)
    tolerance: float = Field(
        default=0.3,
        ge=0,
        le=10,
        description="Reject a latency-objective variant whose latency exceeds (1 + tolerance) x the FP32 "
        "export's at any profiled batch size",
    )
    rounds: int = Field(default=7, ge=3, le=1001, description="At least this many interleaved rounds")
    seconds: float = Field(
        default=0.5,
        ge=0,
        le=600,
        description="Add rounds until the comparison at a batch size took this long",
    )
    round_seconds: float = Field(
        default=0.01,
        gt=0,
        le=10,
        description="Each model runs this long per round (at least one call); the round keeps its fastest call",
    )
    threads: int = Field(
        default=1,
        ge=1,
        description="Intra-op threads while timing; with one, both models run on the same thread and the "
        "OS's placement of thread pools cannot favour either",
    )


class Recipe(_Strict):
    name: str = Field(description="Triton model name")
    description: str = ""
    source: Source
    inputs: list[InputSpec] = Field(min_length=1)
    outputs: list[OutputSpec] = Field(min_length=1)
    validation: ValidationSpec
    budget: float = Field(ge=0, description="Largest allowed drop of the metric vs the baseline (absolute)")
    variants: list[Variant] = Field(min_length=1)
    triton: TritonSettings = Field(default_factory=TritonSettings)
    profile: ProfileSettings = Field(default_factory=ProfileSettings)
    export: ExportSettings = Field(default_factory=ExportSettings)
    performance: PerformanceSettings = Field(default_factory=PerformanceSettings)
    training: TrainingSpec | None = Field(default=None, description="Fine-tuning for techniques that train")

    @model_validator(mode="before")
    @classmethod
    def _fixed_shape_means_no_batching(cls, data: object) -> object:
        # An input whose first dim is a number (e.g. [1, 3, 224, 224], as old exporters wrote)
        # cannot take a batch axis, so when the user left max_batch_size out it defaults to 0
        # instead of the batched default the model could never serve.
        if not isinstance(data, dict) or not isinstance(data.get("inputs"), list):
            return data
        triton = data.get("triton", {})
        if not isinstance(triton, dict) or "max_batch_size" in triton:
            return data
        if any(_fixed_first_dim(spec) is not None for spec in data["inputs"]):
            return {**data, "triton": {**triton, "max_batch_size": 0}}
        return data

    @field_validator("name")
    @classmethod
    def _model_name(cls, name: str) -> str:
        if not _NAME.match(name):
            raise ValueError("use letters, digits, '.', '_' or '-' (max 64), starting with a letter")
        return name

    @model_validator(mode="after")
    def _consistent(self) -> Recipe:
        names = [variant_name(v) for v in self.variants]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"variant names must be unique, repeated: {duplicates}; give each a 'name'")
        input_names = [i.name for i in self.inputs]
        if len(set(input_names)) != len(input_names):
            raise ValueError("input names must be unique")
        outputs = {o.name for o in self.outputs}
        for where, output in [
            ("validation.output", self.validation.output),
            ("training.output", self.training.output if self.training else None),
        ] + [(f"validation.checks[{i}].output", c.output) for i, c in enumerate(self.validation.checks)]:
            if output is not None and output not in outputs:
                raise ValueError(f"{where}: {output!r} is not a declared output ({sorted(outputs)})")
        too_large = [b for b in self.profile.batch_sizes or [] if b > max(self.triton.max_batch_size, 1)]
        if too_large:
            raise ValueError(
                f"profile.batch_sizes {too_large} exceed triton.max_batch_size {self.triton.max_batch_size}"
            )
        if self.triton.max_batch_size > 0:
            for spec in self.inputs:
                if not isinstance(spec.shape[0], str):
                    raise ValueError(
                        f"input {spec.name!r} has a fixed first dim ({spec.shape}), so the model takes no "
                        f"batches, but triton.max_batch_size is {self.triton.max_batch_size}: set "
                        "triton.max_batch_size: 0 (or leave it out), or declare the first dim as a dynamic "
                        "batch axis such as 'batch' if the model accepts any batch size"
                    )
        return self

    @property
    def batch_axis(self) -> str | None:
        first = self.inputs[0].shape[0]
        return first if self.triton.max_batch_size > 0 and isinstance(first, str) else None

    @property
    def fixed_batch(self) -> int | None:
        """The fixed first dim every input shares when the model takes no batches (e.g. 1), else None."""
        if self.triton.max_batch_size > 0:
            return None
        firsts = {spec.shape[0] for spec in self.inputs}
        first = firsts.pop() if len(firsts) == 1 else None
        return first if isinstance(first, int) else None


def _fixed_first_dim(spec: object) -> int | None:
    shape = spec.get("shape") if isinstance(spec, dict) else None
    first = shape[0] if isinstance(shape, list) and shape else None
    return first if isinstance(first, int) and not isinstance(first, bool) else None


class LoadedRecipe(BaseModel):
    """A validated recipe plus where it came from (paths resolved, hash for lineage)."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    recipe: Recipe
    path: Path
    sha256: str

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    def resolve(self, path: Path) -> Path:
        return path if path.is_absolute() else (self.base_dir / path).resolve()


_TAGS = {
    "pytorch",
    "torchscript",
    "onnx",
    "npz",
    "factory",
    "onnx-fp32",
    "onnx-int8-dynamic",
    "onnx-int8-static",
    "onnx-fp16",
    "qat-int8",
    "prune-unstructured",
    "prune-structured",
    "distill",
    "openvino-fp32",
    "openvino-int8",
}  # discriminator values pydantic adds to error locations: not fields


def _format_location(loc: tuple[object, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif item not in _TAGS:
            parts.append(f".{item}" if parts else str(item))
    return "".join(parts) or "(top level)"


def format_validation_error(exc: ValidationError, source: str) -> str:
    lines = []
    for err in exc.errors():
        where = _format_location(tuple(err["loc"]))
        if err["type"] == "extra_forbidden":
            lines.append(f"{source}: unknown field '{where}' (check its spelling or remove it)")
        elif err["type"] == "missing":
            lines.append(f"{source}: '{where}' is required")
        else:
            lines.append(f"{source}: '{where}': {err['msg']}")
    return "; ".join(lines)


def parse_recipe(data: object, source: str = "recipe") -> Recipe:
    if not isinstance(data, dict):
        raise RecipeError(f"{source}: a recipe must be a YAML mapping", hint="see examples/*/recipe.yaml")
    try:
        return Recipe.model_validate(data)
    except ValidationError as exc:
        raise RecipeError(format_validation_error(exc, source)) from None


def load_recipe(path: Path | str) -> LoadedRecipe:
    path = Path(path).resolve()
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise RecipeError(
            f"recipe {path} does not exist", hint="pass the path of a recipe YAML file"
        ) from None
    except OSError as exc:
        raise RecipeError(f"recipe {path} cannot be read: {exc.strerror}") from None
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise RecipeError(f"{path.name}: invalid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    recipe = parse_recipe(data, path.name)
    return LoadedRecipe(recipe=recipe, path=path, sha256=hashlib.sha256(raw).hexdigest())
