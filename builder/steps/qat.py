"""``qat-int8``: quantization-aware training. Fake-quant fine-tuning from the FP32 weights in torch,
exported to ONNX (QDQ), verified against the fine-tuned torch model, then gated like any variant.

torch 2.13 has no pt2e quantization flow, so this uses eager mode (``torch.ao.quantization``,
deprecated upstream; tested with torch 2.13 only, see pyproject's pin): ``prepare_qat`` with plain
``FakeQuantize`` observers, exported *unconverted* with the TorchScript-based exporter, which writes
QuantizeLinear/DequantizeLinear pairs that onnxruntime runs as QLinearConv/QGemm. The default x86
qconfig (fused observer + fake-quant ops) did not export, nor did the dynamo exporter.
"""

from __future__ import annotations

import copy
import time
import warnings

from tritium.builder.artifacts import Artifact, Recorder, StepRecord, quiet_tool
from tritium.builder.context import BuildContext
from tritium.builder.recipe import DType, QatInt8Variant, Recipe
from tritium.builder.runners import OrtRunner, TorchRunner
from tritium.builder.steps.base import Job, Parent, Technique
from tritium.builder.training import fine_tune
from tritium.errors import ExportError, cause_text

# Per-axis QuantizeLinear/DequantizeLinear (per-channel weights) need opset 13.
QAT_OPSET = 13
# How many output quantization steps the ONNX export may differ from torch at one element (rounding
# at a boundary moves a hidden activation by a step; measured up to 3 output steps on small MLPs)
MAX_STEPS = 4


def qconfig(per_channel: bool):
    """Plain FakeQuantize observers: activations uint8 per tensor, weights int8 symmetric."""
    import torch
    from torch.ao import quantization as tq

    activation = tq.FakeQuantize.with_args(
        observer=tq.MovingAverageMinMaxObserver,
        quant_min=0,
        quant_max=255,
        dtype=torch.quint8,
        qscheme=torch.per_tensor_affine,
    )
    if per_channel:
        weight = tq.FakeQuantize.with_args(
            observer=tq.MovingAveragePerChannelMinMaxObserver,
            quant_min=-128,
            quant_max=127,
            dtype=torch.qint8,
            qscheme=torch.per_channel_symmetric,
            ch_axis=0,
        )
    else:
        weight = tq.FakeQuantize.with_args(
            observer=tq.MovingAverageMinMaxObserver,
            quant_min=-128,
            quant_max=127,
            dtype=torch.qint8,
            qscheme=torch.per_tensor_symmetric,
        )
    described = {
        "activations": "uint8 per tensor, moving-average min/max",
        "weights": f"int8 symmetric per {'channel' if per_channel else 'tensor'}",
        "observers": "torch.ao.quantization.FakeQuantize",
    }
    return tq.QConfig(activation=activation, weight=weight), described


def fusions(model) -> list[list[str]]:
    """Runs of modules torch's QAT can fuse, found in ``nn.Sequential`` containers: Conv[+BN][+ReLU],
    Linear[+BN][+ReLU]. Fused, the observer sits after the ReLU, so onnxruntime sees DQ → Conv → Q
    and runs QLinearConv; unfused, a ReLU between them keeps the next layer in FP32 (measured on
    digits: 1.9x the FP32 export's latency at batch 1 instead of 0.86x)."""
    from torch import nn

    heads = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
    norms = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
    found = []
    for prefix, container in model.named_modules():
        if not isinstance(container, nn.Sequential):
            continue
        children = list(container.named_children())
        index = 0
        while index < len(children):
            run = [children[index]]
            if isinstance(run[0][1], heads):
                follow = index + 1
                if follow < len(children) and isinstance(children[follow][1], norms):
                    run.append(children[follow])
                    follow += 1
                if follow < len(children) and isinstance(children[follow][1], nn.ReLU):
                    run.append(children[follow])
            if len(run) > 1:
                found.append([f"{prefix}.{name}" if prefix else name for name, _ in run])
            index += len(run)
    return found


def prepare(model, config):
    """torch's ``prepare_qat``, with observers also after ``nn.Flatten``: a Linear fed by a Flatten
    then gets a quantized input, which onnxruntime needs to run it as QGemm."""
    from torch import nn
    from torch.ao import quantization as tq

    model.qconfig = config
    model.train()
    runs = fusions(model)
    if runs:
        tq.fuse_modules_qat(model, runs, inplace=True)
    tq.propagate_qconfig_(model)
    mapping = tq.get_default_qat_module_mappings()
    tq.convert(model, mapping=mapping, inplace=True, remove_qconfig=False)
    allow = tq.get_default_qconfig_propagation_list() | {nn.Flatten}
    tq.prepare(model, observer_non_leaf_module_list=set(mapping.values()), inplace=True, allow_list=allow)
    return model, runs


def _wrapped(module, recipe: Recipe):
    """The model between quant stubs on its float inputs and dequant stubs on its outputs."""
    from torch import nn
    from torch.ao import quantization as tq

    floats = [spec.dtype in (DType.FP32, DType.FP16, DType.FP64) for spec in recipe.inputs]

    class QatModel(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.quant = nn.ModuleList(tq.QuantStub() if f else nn.Identity() for f in floats)
            self.model = module
            self.dequant = tq.DeQuantStub()

        def forward(self, *inputs):
            result = self.model(*(stub(x) for stub, x in zip(self.quant, inputs, strict=True)))
            if isinstance(result, list | tuple):
                return tuple(self.dequant(r) for r in result)
            return self.dequant(result)

    return QatModel()


class QatInt8(Technique):
    kind = "qat-int8"
    parent = Parent.SOURCE

    def cannot_apply(self, variant, recipe: Recipe) -> str | None:
        if recipe.source.kind != "pytorch":
            return (
                "quantization-aware training fine-tunes the weights of a PyTorch model; this recipe's source is "
                f"{'an ONNX file' if recipe.source.kind == 'onnx' else 'a TorchScript file'} "
                "(use a pytorch source with a factory)"
            )
        if recipe.training is None:
            return (
                "quantization-aware training needs the recipe's 'training' section (a dataset and a loss, or "
                "a factory with your own loop)"
            )
        return None

    def produce(self, job: Job, ctx: BuildContext) -> Artifact:
        import torch
        from torch.ao import quantization as tq

        spec: QatInt8Variant = job.variant
        recipe = ctx.recipe
        training = recipe.training
        assert training is not None  # the planner blocks the variant otherwise
        recorder = Recorder()
        config, described = qconfig(spec.per_channel)
        epochs = spec.epochs or training.epochs
        learning_rate = spec.learning_rate or training.learning_rate
        threads = torch.get_num_threads()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.ao.quantization's deprecation notices
            try:
                prepared, fused = prepare(_wrapped(copy.deepcopy(ctx.source.module), recipe), config)
            except Exception as exc:
                raise ExportError(
                    f"variant {job.name}: torch could not prepare the model for QAT: {cause_text(exc)}"
                ) from None
            input_names = [s.name for s in recipe.inputs]
            output_names = [o.name for o in recipe.outputs]
            teacher = ctx.source.module.eval()
            with ctx.task(
                f"variant {job.name}: training", epochs if training.factory is None else None
            ) as task:
                started = time.perf_counter()
                summary = fine_tune(
                    prepared,
                    teacher,
                    ctx.loaded,
                    training,
                    technique=self.kind,
                    epochs=epochs,
                    learning_rate=learning_rate,
                    input_names=input_names,
                    output_names=output_names,
                    task=task,
                )
            torch.set_num_threads(threads)
            recorder.add(
                StepRecord(
                    "qat-fine-tune",
                    {
                        "epochs": epochs,
                        "learning_rate": learning_rate,
                        "loss": training.loss.value if training.loss else None,
                        "factory": training.factory,
                        "losses": [float(f"{x:.6g}") for x in summary.losses],
                        "qconfig": described,
                        "fused_modules": fused,
                    },
                    time.perf_counter() - started,
                )
            )
            prepared.apply(tq.disable_observer)  # export the scales training ended with
            prepared.eval()
            exported = ctx.output(f"{job.name}.fake-quant", ".onnx")
            self._export(prepared, recipe, exported, recorder)
        out = ctx.output(job.name, ".onnx")
        fold = {"tool": "onnxruntime basic graph optimization"}
        with recorder.timed("fold-weight-quantization", fold), quiet_tool(ctx.work):
            import onnxruntime as ort

            # folds QuantizeLinear on constant weights into INT8 initializers (the file holds INT8
            # weights, DequantizeLinear stays): standard ONNX ops only
            options = ort.SessionOptions()
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
            options.optimized_model_filepath = str(out)
            ort.InferenceSession(str(exported), options, providers=["CPUExecutionProvider"])
        exported.unlink(missing_ok=True)
        self._verify(prepared, out, ctx, recorder)
        return Artifact(
            job.name,
            self.kind,
            out,
            self.platform,
            tuple(recorder.records),
            parent="source",
            training=_with_qconfig(summary, described),
        )

    @staticmethod
    def _export(model, recipe: Recipe, path, recorder: Recorder) -> None:
        import numpy as np
        import torch

        from tritium.builder.data import synthetic_inputs

        opset = max(recipe.export.opset, QAT_OPSET)
        dims = {name: sizes[0] for name, sizes in recipe.export.verify_dims.items() if sizes}
        example = synthetic_inputs(
            recipe.inputs, 2 if recipe.batch_axis else 1, dims, np.random.default_rng(0)
        )
        dynamic_axes = {s.name: s.dynamic_axes for s in recipe.inputs if s.dynamic_axes}
        if recipe.batch_axis:
            for output in recipe.outputs:
                dynamic_axes.setdefault(output.name, {0: recipe.batch_axis})
        params = {"exporter": "torch.onnx (TorchScript-based), unconverted fake-quant", "opset": opset}
        with recorder.timed("export-onnx-qdq", params):
            try:
                with torch.no_grad():
                    torch.onnx.export(
                        model,
                        tuple(torch.from_numpy(example[s.name]) for s in recipe.inputs),
                        str(path),
                        input_names=[s.name for s in recipe.inputs],
                        output_names=[o.name for o in recipe.outputs],
                        dynamic_axes=dynamic_axes,
                        opset_version=opset,
                        do_constant_folding=True,
                        dynamo=False,
                    )
            except Exception as exc:
                raise ExportError(f"exporting the QAT model to ONNX failed: {cause_text(exc)}") from None

    @staticmethod
    def _verify(model, path, ctx: BuildContext, recorder: Recorder) -> None:
        """The ONNX file against the fine-tuned torch model at the verification shapes.

        Both compute the same fake-quantized arithmetic, but onnxruntime runs it in integers and
        rounds at other points: where a value lies on a rounding boundary, a hidden activation moves
        by one quantization step, and the outputs by a few of theirs. So the check allows a mean
        error of half an output step and a largest error of a few steps (plus export.atol); an
        export that computes something else is off by far more, on most elements.
        """
        import numpy as np

        from tritium.builder.data import synthetic_inputs
        from tritium.builder.export import verification_shapes

        recipe = ctx.recipe
        step = _output_step(path)
        mean_limit = recipe.export.atol + 0.5 * step
        max_limit = recipe.export.atol + MAX_STEPS * step
        onnx_runner = OrtRunner(path, "qat (onnx)", ctx.threads)
        torch_runner = TorchRunner(
            model,
            [s.name for s in recipe.inputs],
            [o.name for o in recipe.outputs],
            "qat (torch)",
            ctx.threads,
        )
        rng = np.random.default_rng(1234)
        checked = []
        params = {"output_quantization_step": step, "mean_limit": mean_limit, "max_limit": max_limit}
        with recorder.timed("verify-qat-export", params):
            for batch, dims in verification_shapes(recipe):
                inputs = synthetic_inputs(recipe.inputs, batch, dims, rng)
                shape = f"batch={batch}" + "".join(f", {k}={v}" for k, v in dims.items())
                try:
                    got = onnx_runner.run(inputs)
                except Exception as exc:
                    raise ExportError(
                        f"the QAT model's ONNX export fails at {shape}: {cause_text(exc)}"
                    ) from None
                want = torch_runner.run(inputs)
                worst = mean = 0.0
                for name, expected in want.items():
                    if got[name].shape != expected.shape:
                        raise ExportError(
                            f"the QAT model's ONNX export gives {name!r} shape {list(got[name].shape)} at {shape}, "
                            f"the fine-tuned torch model {list(expected.shape)}"
                        )
                    error = np.abs(got[name].astype(np.float64) - expected.astype(np.float64))
                    worst, mean = max(worst, float(error.max(initial=0.0))), max(mean, float(error.mean()))
                if mean > mean_limit or worst > max_limit:
                    raise ExportError(
                        f"the QAT model's ONNX export differs from the fine-tuned torch model at {shape}: mean "
                        f"error {mean:.3g} (allowed {mean_limit:.3g}), largest {worst:.3g} (allowed {max_limit:.3g})",
                        hint="the exported graph computes something else than the fine-tuned torch model",
                    )
                checked.append({"batch": batch, **dims, "max_abs_error": worst, "mean_abs_error": mean})
            params["verified_shapes"] = checked


def _output_step(path) -> float:
    """The largest quantization step of a DequantizeLinear that produces a graph output (0 if none)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    values = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    outputs = {o.name for o in model.graph.output}
    producers = {out: node for node in model.graph.node for out in node.output}
    step = 0.0
    for name in outputs:
        node = producers.get(name)
        while node is not None and node.op_type in ("Identity", "Reshape", "Flatten"):
            node = producers.get(node.input[0])
        if node is not None and node.op_type == "DequantizeLinear" and node.input[1] in values:
            step = max(step, float(values[node.input[1]].max()))
    return step


def _with_qconfig(summary, described: dict):
    from dataclasses import replace

    return replace(summary, qconfig=described)
