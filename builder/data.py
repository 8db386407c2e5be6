"""Validation and calibration sets, and synthetic inputs made from the recipe's input specs."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tritium.builder.imports import import_callable
from tritium.builder.recipe import DType, FactoryDataset, InputSpec, LoadedRecipe, NpzDataset
from tritium.errors import DatasetError

Inputs = dict[str, np.ndarray]


@dataclass(frozen=True)
class Batch:
    inputs: Inputs
    labels: np.ndarray | None

    @property
    def size(self) -> int:
        return len(next(iter(self.inputs.values())))


@dataclass(frozen=True)
class EvalSet:
    name: str
    batches: tuple[Batch, ...]

    @property
    def samples(self) -> int:
        return sum(b.size for b in self.batches)

    @property
    def labels(self) -> np.ndarray | None:
        if any(b.labels is None for b in self.batches):
            return None
        return np.concatenate([b.labels for b in self.batches])


def check_inputs(
    inputs: Inputs, specs: Sequence[InputSpec], where: str, *, samples_on_axis0: bool = False
) -> Inputs:
    """Check names, ranks, fixed dims and dtypes; cast same-kind dtypes to the declared ones.

    ``samples_on_axis0``: axis 0 holds any number of samples (an npz for a fixed-batch model,
    split into the model's batches later), so its declared size is not checked here.
    """
    expected = [s.name for s in specs]
    if sorted(inputs) != sorted(expected):
        raise DatasetError(
            f"{where}: has inputs {sorted(inputs)}, the recipe declares {expected}",
            hint="name the arrays like the recipe's inputs",
        )
    checked: Inputs = {}
    for spec in specs:
        array = np.asarray(inputs[spec.name])
        if array.ndim != len(spec.shape):
            raise DatasetError(
                f"{where}: input {spec.name!r} has shape {list(array.shape)}, expected rank {len(spec.shape)} "
                f"like {spec.shape}",
                hint="reshape the data to the recipe's input shape",
            )
        for axis, (size, dim) in enumerate(zip(array.shape, spec.shape, strict=True)):
            if axis == 0 and samples_on_axis0:
                continue
            if isinstance(dim, int) and size != dim:
                raise DatasetError(
                    f"{where}: input {spec.name!r} has shape {list(array.shape)}, expected {spec.shape} "
                    f"(axis {axis} must be {dim})",
                    hint="reshape the data to the recipe's input shape",
                )
        want = np.dtype(spec.dtype.numpy)
        if array.dtype != want:
            if array.dtype.kind != want.kind and not (array.dtype.kind in "iu" and want.kind in "iu"):
                raise DatasetError(
                    f"{where}: input {spec.name!r} is {array.dtype}, the recipe declares {spec.dtype.value}"
                )
            array = array.astype(want)
        checked[spec.name] = array
    sizes = {len(a) for a in checked.values()}
    if len(sizes) > 1:
        raise DatasetError(f"{where}: inputs have different numbers of samples {sorted(sizes)}")
    return checked


def _npz_batches(
    path: Path, spec: NpzDataset, specs: Sequence[InputSpec], fixed_batch: int | None
) -> Iterator[Batch]:
    """Batches of ``spec.batch_size`` samples, or of exactly ``fixed_batch`` for a fixed-batch model."""
    if not path.is_file():
        raise DatasetError(f"dataset {path} does not exist", hint="fix the dataset path in the recipe")
    try:
        archive = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise DatasetError(f"dataset {path} is not a readable .npz file: {exc}") from None
    with archive:
        arrays = {k: archive[k] for k in archive.files}
    labels = None
    if spec.labels is not None:
        if spec.labels not in arrays:
            raise DatasetError(
                f"dataset {path} has no labels array {spec.labels!r} (arrays: {sorted(arrays)})",
                hint="add it, or set 'labels: null' for metrics that need none",
            )
        labels = arrays.pop(spec.labels)
    missing = [s.name for s in specs if s.name not in arrays]
    if missing:
        raise DatasetError(
            f"dataset {path.name} has no array for input(s) {missing} (arrays: {sorted(arrays)})",
            hint="name the arrays like the recipe's inputs",
        )
    inputs = check_inputs(
        {s.name: arrays[s.name] for s in specs},
        specs,
        f"dataset {path.name}",
        samples_on_axis0=fixed_batch is not None,
    )
    total = len(next(iter(inputs.values())))
    if spec.limit:
        total = min(total, spec.limit)
    if labels is not None and len(labels) < total:
        raise DatasetError(f"dataset {path.name}: {len(labels)} labels for {total} samples")
    step = spec.batch_size
    if fixed_batch is not None:  # the model takes exactly this many samples per call
        if total % fixed_batch:
            raise DatasetError(
                f"dataset {path.name}: {total} samples do not split into the model's fixed batch of "
                f"{fixed_batch} (its inputs' first dim)",
                hint=f"use a multiple of {fixed_batch} samples, or set the dataset's 'limit'",
            )
        step = fixed_batch
    for start in range(0, total, step):
        stop = min(start + step, total)
        yield Batch(
            {k: v[start:stop] for k, v in inputs.items()}, None if labels is None else labels[start:stop]
        )


def _factory_batches(
    loaded: LoadedRecipe, spec: FactoryDataset, specs: Sequence[InputSpec]
) -> Iterator[Batch]:
    factory = import_callable(
        spec.factory, what="dataset factory", search_dirs=(loaded.base_dir, Path.cwd()), error=DatasetError
    )
    try:
        produced: Iterable = factory(**spec.kwargs)
        for index, item in enumerate(produced):
            if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], dict)):
                raise DatasetError(
                    f"dataset factory {spec.factory!r} must yield (inputs: dict, labels or None) tuples"
                )
            inputs, labels = item
            checked = check_inputs(inputs, specs, f"dataset factory {spec.factory!r} batch {index}")
            yield Batch(checked, None if labels is None else np.asarray(labels))
    except DatasetError:
        raise
    except Exception as exc:
        raise DatasetError(f"dataset factory {spec.factory!r} raised {type(exc).__name__}: {exc}") from None


def load_dataset(
    loaded: LoadedRecipe, spec: NpzDataset | FactoryDataset, name: str, max_samples: int | None = None
) -> EvalSet:
    specs = loaded.recipe.inputs
    if isinstance(spec, NpzDataset):
        batches = _npz_batches(loaded.resolve(spec.path), spec, specs, loaded.recipe.fixed_batch)
    else:
        batches = _factory_batches(loaded, spec, specs)
    kept: list[Batch] = []
    seen = 0
    for batch in batches:
        if max_samples is not None and seen >= max_samples:
            break
        kept.append(batch)
        seen += batch.size
    if not kept:
        raise DatasetError(f"{name} set is empty", hint="point the recipe at a dataset with samples")
    return EvalSet(name, tuple(kept))


def synthetic_inputs(
    specs: Sequence[InputSpec], batch: int, dims: dict[str, int], rng: np.random.Generator
) -> Inputs:
    """Random inputs of the declared dtypes and ranges; dynamic axes take sizes from ``dims``."""
    out: Inputs = {}
    for spec in specs:
        shape = []
        for axis, dim in enumerate(spec.shape):
            if isinstance(dim, int):
                shape.append(dim)
            elif axis == 0:
                shape.append(batch)
            else:
                shape.append(dims.get(dim, 16))
        dtype = np.dtype(spec.dtype.numpy)
        low, high = spec.range or ((0.0, 1.0) if dtype.kind == "f" else (0, 100))
        if spec.dtype is DType.BOOL:
            out[spec.name] = rng.random(shape) < 0.5
        elif dtype.kind == "f":
            out[spec.name] = rng.uniform(low, high, size=shape).astype(dtype)
        else:
            out[spec.name] = rng.integers(int(low), max(int(high), int(low) + 1), size=shape, dtype=dtype)
    return out


HOLD_OUT_EVERY = 4  # one sample in four goes to the accuracy-control search


def hold_out(
    eval_set: EvalSet, *, every: int = HOLD_OUT_EVERY, fixed_batch: int | None = None
) -> tuple[EvalSet, EvalSet]:
    """Split a validation set into what the gate scores and what a search may look at.

    Every ``every``-th sample (every ``every``-th batch for a fixed-batch model, whose batches
    cannot be cut) is held out, spread over the whole set so both parts see the same mix. The
    split is deterministic: the same set always splits the same way.
    """
    kept: list[Batch] = []
    held: list[Batch] = []
    if fixed_batch is not None:
        for index, batch in enumerate(eval_set.batches):
            (held if index % every == every - 1 else kept).append(batch)
    else:
        seen = 0
        for batch in eval_set.batches:
            chosen = (np.arange(seen, seen + batch.size) % every) == every - 1
            seen += batch.size
            for part, mask in ((held, chosen), (kept, ~chosen)):
                if mask.any():
                    part.append(
                        Batch(
                            {k: v[mask] for k, v in batch.inputs.items()},
                            None if batch.labels is None else np.asarray(batch.labels)[mask],
                        )
                    )
    if not kept or not held:
        raise DatasetError(
            f"the {eval_set.name} set ({eval_set.samples} samples) is too small to hold out one sample in "
            f"{every} for the accuracy-control search",
            hint="give the variant's accuracy_control a dataset of its own, or a larger validation set",
        )
    return EvalSet(eval_set.name, tuple(kept)), EvalSet(f"{eval_set.name} (held out)", tuple(held))
