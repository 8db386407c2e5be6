"""Fine-tuning shared by every technique that trains (the recipe's ``training:`` section).

Seeded and deterministic on a CPU: the same recipe, data and torch build give the same weights.
The loop is deliberately plain (Adam, one loss, whole epochs); ``training.factory`` hands the model
to the user's own loop instead.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tritium.builder.data import EvalSet, load_dataset
from tritium.builder.events import Task
from tritium.builder.imports import import_callable
from tritium.builder.lineage import TrainingRecord
from tritium.builder.recipe import LoadedRecipe, LossName, TrainingSpec
from tritium.errors import DatasetError, ExportError, cause_text


@dataclass(frozen=True)
class TrainingSummary:
    technique: str
    spec: TrainingSpec
    epochs: int
    learning_rate: float
    samples: int | None
    losses: tuple[float, ...]
    seconds: float
    qconfig: dict = field(default_factory=dict)
    data_sha256: str | None = None  # the training samples (inputs and labels) as the loop saw them
    details: dict = field(default_factory=dict)  # what the technique adds (pruning schedule, distillation)

    def as_record(self) -> TrainingRecord:
        import torch

        spec = self.spec
        return TrainingRecord(
            technique=self.technique,
            loss=spec.loss.value if spec.loss else None,
            dataset=spec.dataset.model_dump_json() if spec.dataset else None,
            factory=spec.factory,
            epochs=self.epochs,
            learning_rate=self.learning_rate if spec.factory is None else None,
            batch_size=spec.batch_size if spec.factory is None else None,
            seed=spec.seed,
            samples=self.samples,
            losses=[float(f"{loss:.6g}") for loss in self.losses],
            seconds=round(self.seconds, 2),
            torch=torch.__version__,
            qconfig=self.qconfig,
            data_sha256=self.data_sha256,
            final_loss=float(f"{self.losses[-1]:.6g}") if self.losses else None,
            details=self.details,
        )


def load_training_set(loaded: LoadedRecipe, spec: TrainingSpec) -> EvalSet:
    assert spec.dataset is not None
    data = load_dataset(loaded, spec.dataset, "training")
    if spec.loss is LossName.CROSS_ENTROPY and data.labels is None:
        raise DatasetError(
            "training loss 'cross_entropy' needs labels, the training set has none",
            hint="add labels to the training set, or use loss 'mse' or 'cosine' (to the baseline's outputs)",
        )
    return data


def data_sha256(data: EvalSet) -> str:
    """A hash of the samples in their order: the lineage says which data a model was trained on."""
    digest = hashlib.sha256()
    for batch in data.batches:
        for name in sorted(batch.inputs):
            digest.update(name.encode())
            digest.update(np.ascontiguousarray(batch.inputs[name]).tobytes())
        if batch.labels is not None:
            digest.update(np.ascontiguousarray(batch.labels).tobytes())
    return digest.hexdigest()


# loss(model output, labels or None, teacher output or None) -> scalar tensor
LossFn = Callable[[object, "np.ndarray | None", object], object]


def _minibatches(
    data: EvalSet, batch_size: int, generator
) -> Iterator[tuple[dict[str, np.ndarray], np.ndarray | None]]:
    """One epoch, shuffled. Batches with equal shapes are pooled and re-cut to ``batch_size``;
    batches whose shapes differ (token ids padded per batch) are kept whole, in shuffled order."""
    import torch

    shapes = {tuple((k, v.shape[1:]) for k, v in sorted(b.inputs.items())) for b in data.batches}
    if len(shapes) > 1:
        for index in torch.randperm(len(data.batches), generator=generator).tolist():
            batch = data.batches[index]
            yield batch.inputs, batch.labels
        return
    inputs = {k: np.concatenate([b.inputs[k] for b in data.batches]) for k in data.batches[0].inputs}
    labels = data.labels
    for chunk in torch.randperm(data.samples, generator=generator).split(batch_size):
        index = chunk.numpy()
        yield {k: v[index] for k, v in inputs.items()}, None if labels is None else labels[index]


def _loss(spec: TrainingSpec, output, labels, teacher_output):
    import torch
    from torch.nn import functional

    if spec.loss is LossName.CROSS_ENTROPY:
        return functional.cross_entropy(output, torch.as_tensor(labels, dtype=torch.long))
    if spec.loss is LossName.MSE:
        return functional.mse_loss(output, teacher_output)
    flat, target = output.reshape(len(output), -1), teacher_output.reshape(len(output), -1)
    return (1 - functional.cosine_similarity(flat, target, dim=1)).mean()


def fine_tune(
    model,
    teacher,
    loaded: LoadedRecipe,
    spec: TrainingSpec,
    *,
    technique: str,
    epochs: int,
    learning_rate: float,
    input_names: list[str],
    output_names: list[str],
    task: Task | None = None,
    work: Path | None = None,
    loss_fn: LossFn | None = None,
    needs_teacher: bool = False,
    before_epoch: Callable[[int], None] | None = None,
    data: EvalSet | None = None,
) -> TrainingSummary:
    """Train ``model`` in place (train mode); ``teacher`` (the FP32 baseline) gives mse/cosine targets.

    ``loss_fn`` replaces the recipe's loss (distillation mixes the teacher's soft targets with the
    labels; ``needs_teacher`` runs the teacher on each batch for it); ``before_epoch(epoch)`` runs
    before each epoch (a pruning schedule raises the sparsity there); ``data`` replaces the
    recipe's training set.
    """
    import torch

    started = time.perf_counter()
    torch.manual_seed(spec.seed)
    model.train()
    if spec.factory is not None:
        loop = import_callable(
            spec.factory, what="training factory", search_dirs=(loaded.base_dir, Path.cwd())
        )
        try:
            returned = loop(model, **spec.kwargs)
        except Exception as exc:
            raise ExportError(f"training factory {spec.factory!r} raised {cause_text(exc)}") from None
        if returned is not None and returned is not model:
            raise ExportError(
                f"training factory {spec.factory!r} returned a new object; it must train the model it is given "
                "in place (return None or the same model)"
            )
        return TrainingSummary(
            technique, spec, epochs, learning_rate, None, (), time.perf_counter() - started
        )

    data = data if data is not None else load_training_set(loaded, spec)
    output_index = output_names.index(spec.output) if spec.output else 0
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=learning_rate)
    generator = torch.Generator().manual_seed(spec.seed)
    losses = []
    for epoch in range(epochs):
        if before_epoch is not None:
            before_epoch(epoch)
        total, count = 0.0, 0
        for inputs, labels in _minibatches(data, spec.batch_size, generator):
            tensors = [torch.from_numpy(np.ascontiguousarray(inputs[n])) for n in input_names]
            target = None
            if needs_teacher or (loss_fn is None and spec.loss is not LossName.CROSS_ENTROPY):
                with torch.no_grad():
                    target = _select(teacher(*tensors), output_index)
            optimizer.zero_grad()
            output = _select(model(*tensors), output_index)
            loss = loss_fn(output, labels, target) if loss_fn else _loss(spec, output, labels, target)
            if not torch.isfinite(loss):
                raise ExportError(
                    f"training diverged in epoch {epoch + 1} (loss {loss.item()})",
                    hint="lower training.learning_rate",
                )
            loss.backward()
            optimizer.step()
            total += float(loss.item()) * len(tensors[0])
            count += len(tensors[0])
        losses.append(total / max(count, 1))
        if task is not None:
            task.advance(description=f"{technique}: epoch {epoch + 1}/{epochs}, loss {losses[-1]:.4g}")
    return TrainingSummary(
        technique,
        spec,
        epochs,
        learning_rate,
        data.samples,
        tuple(losses),
        time.perf_counter() - started,
        data_sha256=data_sha256(data),
    )


def _select(result, index: int):
    if isinstance(result, dict):
        result = list(result.values())
    if isinstance(result, list | tuple):
        return result[index]
    return result
