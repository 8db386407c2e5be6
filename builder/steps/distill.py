"""``distill``: knowledge distillation into a smaller student, with a control trained beside it.

The recipe's source is the teacher. With a cross-entropy ``training`` section (a classifier) the
student learns from the teacher's logits softened at ``temperature`` (KL divergence, scaled by T²
as in Hinton et al. 2015) mixed with the hard labels (``1 - alpha``), or from the teacher alone
where the transfer set has no labels; with an mse/cosine section (an embedding model) it learns
the teacher's outputs. The validation set is never trained on: the gate scores held-out data.

The control is the same student (same factory, same seed, so the same initial weights), on the
same data for the same epochs, with the labels only: distillation is worth shipping only if it
beats that. Both are scored on the gate's validation set and reported; the gate judges the student.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path

from tritium.builder.artifacts import Artifact, Recorder
from tritium.builder.context import BuildContext
from tritium.builder.data import Batch, EvalSet
from tritium.builder.imports import import_callable
from tritium.builder.model_stats import torch_parameters
from tritium.builder.recipe import DistillVariant, LossName, Recipe
from tritium.builder.runners import TorchRunner, default_threads
from tritium.builder.steps.base import Job, Parent, Technique
from tritium.builder.steps.finetuned import export_trained, needs_torch_and_training, train
from tritium.builder.training import load_training_set
from tritium.errors import DatasetError, ExportError, UserInputError, cause_text

UNLABELLED = -1  # the label of a transfer-set sample whose label is withheld (``labelled:``)


def split_labels(data: EvalSet, labelled: int) -> tuple[EvalSet, EvalSet]:
    """The training set with labels withheld past the first ``labelled`` samples, and those first ones alone."""
    import numpy as np

    if data.labels is None:
        raise DatasetError(
            "distill 'labelled' withholds labels, but the training set has none",
            hint="leave 'labelled' out for an unlabelled transfer set",
        )
    names = list(data.batches[0].inputs)
    inputs = {n: np.concatenate([b.inputs[n] for b in data.batches]) for n in names}
    labels = data.labels.copy()
    labels[labelled:] = UNLABELLED
    masked = EvalSet(data.name, (Batch(inputs, labels),))
    first = EvalSet(data.name, (Batch({n: v[:labelled] for n, v in inputs.items()}, data.labels[:labelled]),))
    return masked, first


def soft_target_loss(temperature: float, alpha: float):
    """alpha · T² · KL(teacher_T || student_T) + (1 - alpha) · CE(student, labels); no labels: KL only."""
    import torch
    from torch.nn import functional

    def loss(output, labels, teacher):
        soft = functional.kl_div(
            functional.log_softmax(output / temperature, dim=-1),
            functional.softmax(teacher / temperature, dim=-1),
            reduction="batchmean",
        ) * (temperature**2)
        if labels is None:
            return soft
        labels = torch.as_tensor(labels, dtype=torch.long)
        if not bool((labels >= 0).any()):  # a batch of the unlabelled transfer set: the teacher alone
            return soft
        hard = functional.cross_entropy(output, labels, ignore_index=UNLABELLED)
        return alpha * soft + (1 - alpha) * hard

    return loss


class Distill(Technique):
    kind = "distill"
    parent = Parent.SOURCE

    def cannot_apply(self, variant, recipe: Recipe) -> str | None:
        reason = needs_torch_and_training("distillation", recipe)
        if reason is None and recipe.training.factory is not None:
            return "distillation runs its own loss on the training set: give training a dataset and a loss, not a factory"
        return reason

    def student(self, job: Job, ctx: BuildContext, seed: int):
        import torch

        spec: DistillVariant = job.variant
        ref = spec.student.factory or ctx.recipe.source.factory
        try:
            factory = import_callable(
                ref, what="student factory", search_dirs=(ctx.loaded.base_dir, Path.cwd())
            )
        except UserInputError as exc:  # this variant fails; the others still build
            raise ExportError(f"variant {job.name}: {exc.message}", hint=exc.hint) from None
        torch.manual_seed(seed)  # the student and its control start from the same weights
        try:
            model = factory(**spec.student.kwargs)
        except Exception as exc:
            raise ExportError(
                f"variant {job.name}: student factory {ref!r} raised {cause_text(exc)}",
                hint="fix the factory or its kwargs under 'student'",
            ) from None
        if not isinstance(model, torch.nn.Module):
            raise ExportError(
                f"variant {job.name}: student factory {ref!r} returned {type(model).__name__}, not a torch.nn.Module"
            )
        return model

    def produce(self, job: Job, ctx: BuildContext) -> Artifact:
        spec: DistillVariant = job.variant
        training = ctx.recipe.training
        student = self.student(job, ctx, training.seed)
        initial = copy.deepcopy(student.state_dict())
        classifier = training.loss is LossName.CROSS_ENTROPY
        recorder = Recorder()
        if classifier:
            loss, described = (
                soft_target_loss(spec.temperature, spec.alpha),
                f"alpha {spec.alpha} x T² KL(teacher || student) at T={spec.temperature} + "
                f"{1 - spec.alpha:g} x cross-entropy on the labels",
            )
        else:  # embeddings: the teacher's outputs are the targets, with the recipe's mse/cosine loss
            loss, described = None, f"{training.loss.value} to the teacher's outputs"
        data = labelled_only = None
        if spec.labelled is not None and classifier:
            data, labelled_only = split_labels(load_training_set(ctx.loaded, training), spec.labelled)
        summary = train(
            student, ctx, spec, self.kind, job.name, recorder, loss_fn=loss, needs_teacher=True, data=data
        )
        path = export_trained(student, ctx, job.name, recorder)
        teacher_parameters = torch_parameters(ctx.source.module)
        details = {
            "teacher": "the recipe's source model",
            "student": spec.student.factory or ctx.recipe.source.factory,
            "student_kwargs": spec.student.kwargs,
            "loss": described,
            "temperature": spec.temperature,
            "alpha": spec.alpha,
            "teacher_parameters": teacher_parameters,
            "student_parameters": torch_parameters(student),
            "parameter_reduction": round(teacher_parameters / max(torch_parameters(student), 1), 3),
            "labelled_samples": spec.labelled if labelled_only is not None else summary.samples,
            "transfer_samples": summary.samples,
        }
        notes: tuple[str, ...] = ()
        if spec.control and classifier:
            control, control_summary = self.control(job, ctx, initial, labelled_only, summary.samples)
            notes = (_compare_note(job, ctx, student, control),)  # adds the student's value to it
            details["control"] = control | {"losses": [float(f"{x:.6g}") for x in control_summary.losses]}
        elif spec.control:
            details["control"] = {
                "trained": False,
                "why": "no labels: the teacher's outputs are the only targets",
            }
        return Artifact(
            job.name,
            self.kind,
            path,
            self.platform,
            tuple(recorder.records),
            parent="source",
            notes=notes,
            training=replace(summary, details=details),
        )

    def control(
        self, job: Job, ctx: BuildContext, initial: dict, data: EvalSet | None, transfer: int
    ) -> tuple[dict, object]:
        """The same student from the same weights, trained on the labels alone (``data``: only the
        labelled samples), scored on the gate's set."""
        spec: DistillVariant = job.variant
        model = self.student(job, ctx, ctx.recipe.training.seed)
        model.load_state_dict(initial)
        epochs = None
        if data is not None:
            # as many optimizer steps as the student took over the whole transfer set: fewer samples
            # in as many epochs would leave the control undertrained, and the comparison unfair
            size = ctx.recipe.training.batch_size
            student_steps = (spec.epochs or ctx.recipe.training.epochs) * -(-transfer // size)
            epochs = -(-student_steps // -(-data.samples // size))
        summary = train(
            model,
            ctx,
            spec,
            f"{self.kind}-control",
            f"{job.name} (control)",
            Recorder(),
            epochs=epochs,
            data=data,
        )
        model.eval()
        scored = {
            "trained": True,
            "epochs": summary.epochs,
            "samples": summary.samples,
            "seconds": round(summary.seconds, 2),
        }
        if ctx.gate is not None:
            recipe = ctx.recipe
            runner = TorchRunner(
                model,
                [s.name for s in recipe.inputs],
                [o.name for o in recipe.outputs],
                "control",
                ctx.threads or default_threads(),
            )
            evaluation, _ = ctx.evaluator.evaluate(runner, ctx.gate.eval_set, ctx.gate.outputs)
            scored["metric"] = evaluation.primary.metric.value
            scored["value"] = evaluation.primary.value
        return scored, summary


def _compare_note(job: Job, ctx: BuildContext, student, control: dict) -> str:
    if "value" not in control:
        return f"control (no teacher) trained; not scored: {control}"
    recipe = ctx.recipe
    runner = TorchRunner(
        student.eval(),
        [s.name for s in recipe.inputs],
        [o.name for o in recipe.outputs],
        job.name,
        ctx.threads or default_threads(),
    )
    evaluation, _ = ctx.evaluator.evaluate(runner, ctx.gate.eval_set, ctx.gate.outputs)
    control["student_value"] = evaluation.primary.value
    gain = evaluation.primary.value - control["value"]
    verdict = "beats" if gain > 0 else "does not beat"
    return (
        f"distilled {control['metric']} {evaluation.primary.value:.4f} vs the control (same student, no "
        f"teacher) {control['value']:.4f}: distillation {verdict} it ({gain:+.4f})"
    )
