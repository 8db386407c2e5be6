"""The model repository: immutable numbered versions, written atomically, and read back.

Writes stage everything beside the repository (same filesystem), validate the staged tree, then
rename it into place. A failure at any point leaves the repository exactly as it was; versions
that exist are never overwritten.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from tritonclient.grpc import model_config_pb2 as mc

from tritium.builder.triton_config import parse_pbtxt, to_pbtxt
from tritium.errors import NotFoundError, RepositoryError, cause_text

CONFIG = "config.pbtxt"
LINEAGE = "lineage.json"


class LineageSource(Protocol):
    """A lineage record that is made once the repository has numbered its version."""

    def complete(self, version: int, parent_version: int | None) -> dict: ...


@dataclass(frozen=True)
class NewVersion:
    """A model file to add as the next version, with its lineage (a record numbered here)."""

    model_file: Path
    filename: str  # model.onnx | model.pt | model.xml
    lineage: LineageSource | Mapping
    parent_key: str | None = None  # key of another NewVersion in the same write that this one derives from
    key: str = ""
    companions: tuple[tuple[Path, str], ...] = ()  # files the model file needs beside it (model.bin)


def existing_versions(model_dir: Path) -> list[int]:
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())


@contextmanager
def repository_lock(repository: Path) -> Iterator[None]:
    """One writer at a time per repository (advisory lock beside it)."""
    repository.parent.mkdir(parents=True, exist_ok=True)
    lock_path = repository.parent / f".{repository.name}.lock"
    with lock_path.open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RepositoryError(
                f"another build is writing {repository}", hint="wait for it to finish, then run again"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


MODEL_FILES = ("model.onnx", "model.pt", "model.xml")


def _validate_model_file(path: Path) -> None:
    if path.suffix == ".xml":  # OpenVINO IR: reads model.bin beside it
        import openvino as ov

        ov.Core().read_model(str(path))
    elif path.suffix == ".onnx":
        import onnx
        import onnxruntime as ort

        onnx.checker.check_model(str(path))
        ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    else:
        import torch

        torch.jit.load(str(path), map_location="cpu")


def _validate_staged(model_dir: Path, versions: Sequence[int], config_text: str) -> None:
    parsed = parse_pbtxt((model_dir / CONFIG).read_text())
    if to_pbtxt(parsed) != config_text:
        raise RepositoryError(f"{CONFIG} for {model_dir.name} does not round-trip through Triton's schema")
    for version in versions:
        version_dir = model_dir / str(version)
        files = [p for p in version_dir.iterdir() if p.name in MODEL_FILES]
        if len(files) != 1:
            raise RepositoryError(f"staged version {version} has {len(files)} model files")
        try:
            _validate_model_file(files[0])
        except Exception as exc:
            raise RepositoryError(
                f"staged version {version} of {model_dir.name} does not load: {cause_text(exc)}"
            ) from None
        json.loads((version_dir / LINEAGE).read_text())


@dataclass(frozen=True)
class ModelWrite:
    """New versions for one Triton model; ``make_config`` gets every version after the write."""

    model_name: str
    new: Sequence[NewVersion]
    make_config: Callable[[list[int]], mc.ModelConfig]


def write_versions(
    repository: Path,
    model_name: str,
    new: Sequence[NewVersion],
    make_config: Callable[[list[int]], mc.ModelConfig],
    *,
    before_commit: Callable[[Path], None] | None = None,
) -> list[int]:
    """Add ``new`` as the next versions of ``model_name``; returns their version numbers."""
    return write_models(repository, [ModelWrite(model_name, new, make_config)], before_commit=before_commit)[
        model_name
    ]


def write_models(
    repository: Path,
    writes: Sequence[ModelWrite],
    *,
    before_commit: Callable[[Path], None] | None = None,
) -> dict[str, list[int]]:
    """Write new versions of one or more models as one transaction: all land, or none.

    Everything is staged beside the repository and validated first; then each model is renamed
    into place, and a failure part-way puts back what was already moved. ``before_commit``
    (tests) runs on each staged model folder just before the renames.
    """
    repository = repository.resolve()
    try:
        with repository_lock(repository):
            repository.mkdir(parents=True, exist_ok=True)
            staging_root = repository.parent / f".{repository.name}.staging-{uuid.uuid4().hex[:8]}"
            try:
                staged = [_stage(repository, staging_root, write) for write in writes]
                if before_commit:
                    for stage in staged:
                        before_commit(stage.staged_dir)
                _commit_all(staged)
            finally:
                shutil.rmtree(staging_root, ignore_errors=True)
    except OSError as exc:
        raise RepositoryError(
            f"cannot write the model repository {repository}: {exc.strerror or exc} "
            f"({exc.filename or repository}); nothing was changed",
            hint="check that the path is writable and the disk has space",
        ) from None
    return {stage.model_dir.name: stage.numbers for stage in staged}


@dataclass
class _Staged:
    model_dir: Path
    staged_dir: Path
    numbers: list[int]
    moved: list[int]
    backup_config: Path | None = None
    created: bool = False


def _stage(repository: Path, staging_root: Path, write: ModelWrite) -> _Staged:
    model_dir = repository / write.model_name
    if model_dir.exists() and not (model_dir / CONFIG).is_file():
        raise RepositoryError(
            f"{model_dir} exists but holds no {CONFIG}", hint="move it away or choose another model name"
        )
    existing = existing_versions(model_dir)
    start = (existing[-1] if existing else 0) + 1
    numbers = list(range(start, start + len(write.new)))
    by_key = {item.key: number for item, number in zip(write.new, numbers, strict=True) if item.key}
    staged_dir = staging_root / write.model_name
    staged_dir.mkdir(parents=True)
    for item, number in zip(write.new, numbers, strict=True):
        version_dir = staged_dir / str(number)
        version_dir.mkdir()
        shutil.copyfile(item.model_file, version_dir / item.filename)
        for companion, name in item.companions:
            shutil.copyfile(companion, version_dir / name)
        parent = by_key.get(item.parent_key) if item.parent_key is not None else None
        if isinstance(item.lineage, Mapping):
            lineage = dict(item.lineage, version=number)
            if item.parent_key is not None:
                lineage["parent_version"] = parent
        else:
            lineage = item.lineage.complete(number, parent)
        (version_dir / LINEAGE).write_text(json.dumps(lineage, indent=2) + "\n")
    config_text = to_pbtxt(write.make_config(existing + numbers))
    (staged_dir / CONFIG).write_text(config_text)
    _validate_staged(staged_dir, numbers, config_text)
    return _Staged(model_dir, staged_dir, numbers, moved=[])


def _commit_all(staged: Sequence[_Staged]) -> None:
    done: list[_Staged] = []
    try:
        for stage in staged:
            done.append(stage)
            _commit(stage)
    except BaseException:
        for stage in reversed(done):  # put the repository back as it was
            _undo(stage)
        raise


def _commit(stage: _Staged) -> None:
    if not stage.model_dir.exists():
        os.rename(stage.staged_dir, stage.model_dir)
        stage.created = True
        return
    for number in stage.numbers:
        target = stage.model_dir / str(number)
        if target.exists():
            raise RepositoryError(f"version {number} of {stage.model_dir.name} appeared during the build")
        os.rename(stage.staged_dir / str(number), target)
        stage.moved.append(number)
    stage.backup_config = stage.staged_dir / f"{CONFIG}.previous"
    shutil.copyfile(stage.model_dir / CONFIG, stage.backup_config)
    os.replace(stage.staged_dir / CONFIG, stage.model_dir / CONFIG)


def _undo(stage: _Staged) -> None:
    if stage.created:
        os.rename(stage.model_dir, stage.staged_dir)
        return
    if stage.backup_config is not None and stage.backup_config.exists():
        os.replace(stage.backup_config, stage.model_dir / CONFIG)
    for number in stage.moved:
        os.rename(stage.model_dir / str(number), stage.staged_dir / str(number))


@dataclass(frozen=True)
class VersionInfo:
    version: int
    path: Path
    lineage: dict
    served: bool


@dataclass(frozen=True)
class ModelInfo:
    name: str
    path: Path
    config: mc.ModelConfig
    versions: tuple[VersionInfo, ...]


def read_model(repository: Path, name: str) -> ModelInfo:
    model_dir = repository / name
    config_path = model_dir / CONFIG
    if not config_path.is_file():
        known = ", ".join(m.name for m in list_models(repository)) or "none"
        raise NotFoundError(f"model {name!r} is not in {repository} (models: {known})")
    try:
        config = parse_pbtxt(config_path.read_text())
    except Exception as exc:
        raise RepositoryError(f"{config_path} does not parse: {cause_text(exc)}") from None
    numbers = existing_versions(model_dir)
    served = served_versions(config, numbers)
    versions = []
    for number in numbers:
        lineage_path = model_dir / str(number) / LINEAGE
        try:
            lineage = json.loads(lineage_path.read_text()) if lineage_path.is_file() else {}
        except (OSError, ValueError) as exc:
            lineage = {"error": f"unreadable {LINEAGE}: {exc}"}
        versions.append(VersionInfo(number, model_dir / str(number), lineage, number in served))
    return ModelInfo(name, model_dir, config, tuple(versions))


def served_versions(config: mc.ModelConfig, versions: Sequence[int]) -> set[int]:
    """The versions Triton loads under the config's version policy (default: latest 1)."""
    policy = config.version_policy
    choice = policy.WhichOneof("policy_choice")
    if choice == "all":
        return set(versions)
    if choice == "specific":
        return set(policy.specific.versions) & set(versions)
    count = policy.latest.num_versions if choice == "latest" else 1
    return set(sorted(versions)[-max(count, 1) :])


def list_models(repository: Path) -> list[ModelInfo]:
    if not repository.is_dir():
        return []
    names = sorted(p.name for p in repository.iterdir() if (p / CONFIG).is_file())
    return [read_model(repository, n) for n in names]


def write_model_config(
    repository: Path, model_name: str, config: mc.ModelConfig, *, records: dict[str, bytes] | None = None
) -> Path:
    """Replace ``model_name``'s ``config.pbtxt`` with ``config``, adding ``records`` (new files) beside it.

    For settings that change after a build (``tritium tune --apply``): the version policy must be the
    one already written (which versions are served is the builder's and the gateway's business, not a
    config change's), every record path (``"<version>/tuning-<id>.json"``) must be new and inside an
    existing version, and the config is staged, checked to round-trip through Triton's schema, then
    renamed into place; a failure leaves the model as it was.
    """
    repository = repository.resolve()
    model_dir = repository / model_name
    try:
        with repository_lock(repository):
            current_path = model_dir / CONFIG
            if not current_path.is_file():
                raise NotFoundError(f"model {model_name!r} is not in {repository}")
            current = parse_pbtxt(current_path.read_text())
            if current.version_policy != config.version_policy:
                raise RepositoryError(
                    f"the new config of {model_name} changes its version policy; nothing was written",
                    hint="keep the version policy as the repository has it",
                )
            targets = {}
            for relative, _ in (records or {}).items():
                target = (model_dir / relative).resolve()
                if target.parent.parent != model_dir.resolve() or not target.parent.name.isdigit():
                    raise RepositoryError(f"record {relative!r} is not inside a version of {model_name}")
                if not target.parent.is_dir() or target.exists():
                    raise RepositoryError(f"record {relative!r}: no such version, or the file exists")
                targets[relative] = target
            text = to_pbtxt(config)
            staging = repository.parent / f".{repository.name}.staging-{uuid.uuid4().hex[:8]}"
            staging.mkdir()
            try:
                (staging / CONFIG).write_text(text)
                if to_pbtxt(parse_pbtxt((staging / CONFIG).read_text())) != text:
                    raise RepositoryError(
                        f"{CONFIG} for {model_name} does not round-trip through Triton's schema"
                    )
                written: list[Path] = []
                try:
                    for relative, target in targets.items():
                        staged = staging / f"record-{len(written)}"
                        staged.write_bytes((records or {})[relative])
                        os.rename(staged, target)  # same filesystem: whole or absent
                        written.append(target)
                    os.replace(staging / CONFIG, current_path)
                except BaseException:
                    for target in written:
                        target.unlink(missing_ok=True)
                    raise
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    except OSError as exc:
        raise RepositoryError(
            f"cannot write {model_dir}: {exc.strerror or exc} ({exc.filename or model_dir}); nothing was changed",
            hint="check that the path is writable and the disk has space",
        ) from None
    return current_path
