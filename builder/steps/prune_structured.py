"""``prune-structured``: remove whole channels (conv filters, Linear neurons) so the dense model is
smaller and faster, with torch-pruning's dependency graph (DepGraph, Fang et al. 2023) handling
every layer that depends on a removed channel (the next layer's inputs, norms, residual partners);
then fine-tune, export, verify.

A pruned model no longer fits its factory + state dict, so the artifact carries torch-pruning's
pruning history (each group's layer and removed indices): the factory's model with the source
weights, replayed through that history (:func:`replay`), is the pruned architecture again, ready for
the fine-tuned weights. The lineage keeps that plan.

With ``heads: true``, whole attention heads go too (transformers' query/key/value layers, each
head keeping its size; the modules' head counts follow).

The layer that produces a model output keeps its channels (a classifier keeps its classes); more
layers can be kept whole with ``ignored_layers`` (on MiniLM the hidden-size layers must be: with
torch 2.13 torch-pruning's defaults crashed there).
"""

from __future__ import annotations

import copy
from dataclasses import replace
from importlib import metadata

from tritium.builder.artifacts import Artifact, Recorder, StepRecord
from tritium.builder.context import BuildContext
from tritium.builder.model_stats import torch_parameters
from tritium.builder.recipe import PruneStructuredVariant, Recipe
from tritium.builder.steps.base import Job, Parent, Technique
from tritium.builder.steps.finetuned import (
    example_inputs,
    export_trained,
    fraction_error,
    needs_torch_and_training,
    train,
)
from tritium.errors import ExportError, cause_text


def _roots(model) -> list[tuple[str, object]]:
    from torch import nn

    kinds = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
    return [(name, m) for name, m in model.named_modules() if isinstance(m, kinds)]


def _output_layers(model, example) -> set[str]:
    """The Conv/Linear layers whose outputs reach a model output with no other Conv/Linear between:
    removing their channels would change the model's output shape."""
    import torch

    order: list[str] = []
    hooks = [
        module.register_forward_hook(lambda *_, name=name: order.append(name))
        for name, module in _roots(model)
    ]
    try:
        with torch.no_grad():
            model.eval()(*example)
    finally:
        for hook in hooks:
            hook.remove()
    return {order[-1]} if order else set()


def _matches(name: str, pattern: str) -> bool:
    """A module name, a prefix of it (a whole block), or a glob (``*.attention.*``)."""
    from fnmatch import fnmatchcase

    return name == pattern or name.startswith(pattern + ".") or fnmatchcase(name, pattern)


def _attention_modules(model) -> list[tuple[str, object]]:
    """Self-attention modules as Hugging Face transformers write them: query/key/value Linear layers
    and a ``num_attention_heads`` (BERT, MiniLM, RoBERTa...)."""
    return [
        (name, m)
        for name, m in model.named_modules()
        if hasattr(m, "num_attention_heads") and all(hasattr(m, part) for part in ("query", "key", "value"))
    ]


def _sync_heads(model) -> dict[str, int]:
    """After heads were removed, each attention module's head count follows its query layer (the
    forward pass reshapes by head size; the attributes are what a reader of the model sees)."""
    heads = {}
    for name, module in _attention_modules(model):
        module.num_attention_heads = module.query.out_features // module.attention_head_size
        module.all_head_size = module.query.out_features
        heads[name] = module.num_attention_heads
    return heads


def replay(model, example, plan: dict):
    """Apply a recorded pruning ``plan`` to ``model`` (the factory's, source weights loaded)."""
    import torch_pruning as tp

    graph = tp.DependencyGraph().build_dependency(model, example_inputs=example)
    graph.load_pruning_history(plan["history"])
    _sync_heads(model)
    return model


class PruneStructured(Technique):
    kind = "prune-structured"
    parent = Parent.SOURCE

    def cannot_apply(self, variant, recipe: Recipe) -> str | None:
        return fraction_error("amount", variant.amount, "0.25 or 0.5") or needs_torch_and_training(
            "structured pruning", recipe
        )

    def produce(self, job: Job, ctx: BuildContext) -> Artifact:
        try:
            import torch_pruning as tp
        except ImportError:
            raise ExportError(
                "structured pruning needs the torch-pruning package",
                hint="pip install 'tritium[builder]' (or torch-pruning)",
            ) from None

        spec: PruneStructuredVariant = job.variant
        recipe = ctx.recipe
        model = copy.deepcopy(ctx.source.module).eval()
        example = example_inputs(recipe)
        roots = dict(_roots(model))
        if not roots:
            raise ExportError(
                f"variant {job.name}: the model has no prunable layers (no Conv or Linear)",
                hint="prune-structured removes Conv channels and Linear neurons; remove the variant for this model",
            )
        kept = _output_layers(model, example)
        unknown = [p for p in spec.ignored_layers if not any(_matches(n, p) for n in roots)]
        if unknown:
            raise ExportError(
                f"variant {job.name}: ignored_layers {unknown} name no Conv/Linear layer of the model",
                hint=f"use module names such as {sorted(roots)[:4]}",
            )
        kept |= {n for n in roots for p in spec.ignored_layers if _matches(n, p)}
        if not set(roots) - kept:
            raise ExportError(
                f"variant {job.name}: no prunable layers left: every Conv/Linear is an output layer or ignored",
                hint="remove layers from ignored_layers, or remove the variant for this model",
            )
        attention = _attention_modules(model) if spec.heads else []
        if spec.heads and not attention:
            raise ExportError(
                f"variant {job.name}: heads: true, but the model has no attention module with query/key/value "
                "layers and num_attention_heads",
                hint="remove 'heads' (it prunes transformer attention heads), or prune channels only",
            )
        heads_before = {name: int(m.num_attention_heads) for name, m in attention}
        recorder = Recorder()
        before_macs, before_params = tp.utils.count_ops_and_params(model, example)
        params = {
            "library": f"torch-pruning {metadata.version('torch-pruning')} (DepGraph)",
            "importance": "L2 magnitude of each channel group",
            "amount": spec.amount,
            "scope": spec.scope,
            "ignored_layers": sorted(kept),
            "heads": spec.heads,
        }
        head_options = {}
        if attention:  # whole heads out of query/key/value together, each head keeping its size
            head_options = {
                "num_heads": {
                    getattr(m, part): int(m.num_attention_heads)
                    for _, m in attention
                    for part in ("query", "key", "value")
                },
                "prune_num_heads": True,
                "prune_head_dims": False,
                "head_pruning_ratio": spec.amount,
            }
        with recorder.timed("prune-channels", params):
            try:
                pruner = tp.pruner.MetaPruner(
                    model,
                    example,
                    importance=tp.importance.MagnitudeImportance(p=2),
                    pruning_ratio=spec.amount,
                    global_pruning=spec.scope == "global",
                    ignored_layers=[roots[n] for n in sorted(kept)],
                    **head_options,
                )
                pruner.step()
            except Exception as exc:
                raise ExportError(
                    f"variant {job.name}: torch-pruning could not prune the model: {cause_text(exc)}",
                    hint="keep the layers it fails on whole with ignored_layers (for transformers: the hidden-size layers)",
                ) from None
            history = [
                [name, bool(out), [int(i) for i in idxs]] for name, out, idxs in pruner.DG.pruning_history()
            ]
            heads_after = _sync_heads(model) if attention else {}
            after_macs, after_params = tp.utils.count_ops_and_params(model, example)
            if attention:
                params["attention_heads"] = {
                    name: [heads_before[name], heads_after[name]] for name in heads_before
                }
            params.update(
                macs_before=int(before_macs),
                macs_after=int(after_macs),
                parameters_before=int(before_params),
                parameters_after=int(after_params),
                layers={
                    name: list(module.weight.shape)
                    for name, module in _roots(model)
                    if name in roots
                    and module.weight.shape != ctx.source.module.get_submodule(name).weight.shape
                },
            )
        if after_params >= before_params:
            raise ExportError(
                f"variant {job.name}: pruning removed nothing (amount {spec.amount} of too few channels)",
                hint="raise 'amount'",
            )
        summary = train(model, ctx, spec, self.kind, job.name, recorder)
        path = export_trained(model, ctx, job.name, recorder)
        plan = {
            "library": params["library"],
            "rebuild": "the source's factory and state dict, then torch_pruning.DependencyGraph()"
            ".build_dependency(model, example_inputs).load_pruning_history(history), then the fine-tuned "
            "weights (their values are the initializers of model.onnx)",
            "history": history,
            "parameters_before": int(before_params),
            "parameters_after": int(after_params),
            "macs_before": int(before_macs),
            "macs_after": int(after_macs),
            "attention_heads": params.get("attention_heads", {}),
        }
        recorder.add(StepRecord("pruning-plan", {"groups": len(history)}, 0.0))
        details = {k: v for k, v in plan.items() if k != "history"} | {
            "torch_parameters": torch_parameters(model)
        }
        return Artifact(
            job.name,
            self.kind,
            path,
            self.platform,
            tuple(recorder.records),
            parent="source",
            training=replace(summary, details=details),
            pruning=plan,
        )
