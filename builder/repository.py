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
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tritonclient.grpc import model_config_pb2 as mc

from builder.triton_config import parse_pbtxt, to_pbtxt
from tritium.errors import NotFoundError, RepositoryError

CONFIG = "config.pbtxt"
LINEAGE = "lineage.json"


@dataclass(frozen=True)
class NewVersion:
    """A model file to add as the next version, with its lineage record (version filled in here)."""

    model_file: Path
    filename: str  # model.onnx | model.pt
    lineage: dict
    parent_key: str | None = None  # key of another NewVersion in the same write that this one derives from
    key: str = ""


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


def _validate_model_file(path: Path) -> None:
    if path.suffix == ".onnx":
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
        files = [p for p in version_dir.iterdir() if p.name.startswith("model.")]
        if len(files) != 1:
            raise RepositoryError(f"staged version {version} has {len(files)} model files")
        try:
            _validate_model_file(files[0])
        except Exception as exc:
            raise RepositoryError(
                f"staged version {version} of {model_dir.name} does not load: {str(exc).splitlines()[0]}"
            ) from None
        json.loads((version_dir / LINEAGE).read_text())


def write_versions(
    repository: Path,
    model_name: str,
    new: Sequence[NewVersion],
    make_config: Callable[[list[int]], mc.ModelConfig],
    *,
    before_commit: Callable[[Path], None] | None = None,
) -> list[int]:
    """Add ``new`` as the next versions of ``model_name``; returns their version numbers.

    ``make_config`` receives every version of the model after the write and returns its config.
    ``before_commit`` (tests) runs on the staged model folder just before the rename.
    """
    repository = repository.resolve()
    with repository_lock(repository):
        repository.mkdir(parents=True, exist_ok=True)
        model_dir = repository / model_name
        if model_dir.exists() and not (model_dir / CONFIG).is_file():
            raise RepositoryError(
                f"{model_dir} exists but holds no {CONFIG}", hint="move it away or choose another model name"
            )
        existing = existing_versions(model_dir)
        start = (existing[-1] if existing else 0) + 1
        numbers = list(range(start, start + len(new)))
        by_key = {item.key: number for item, number in zip(new, numbers, strict=True) if item.key}

        staging_root = repository.parent / f".{repository.name}.staging-{uuid.uuid4().hex[:8]}"
        staged_model = staging_root / model_name
        try:
            staged_model.mkdir(parents=True)
            for item, number in zip(new, numbers, strict=True):
                version_dir = staged_model / str(number)
                version_dir.mkdir()
                shutil.copyfile(item.model_file, version_dir / item.filename)
                lineage = dict(item.lineage, version=number)
                if item.parent_key is not None:
                    lineage["parent_version"] = by_key.get(item.parent_key)
                (version_dir / LINEAGE).write_text(json.dumps(lineage, indent=2, sort_keys=False) + "\n")
            config_text = to_pbtxt(make_config(existing + numbers))
            (staged_model / CONFIG).write_text(config_text)
            _validate_staged(staged_model, numbers, config_text)
            if before_commit:
                before_commit(staged_model)
            _commit(staged_model, model_dir, numbers)
        finally:
            shutil.rmtree(staging_root, ignore_errors=True)
        return numbers


def _commit(staged_model: Path, model_dir: Path, numbers: Sequence[int]) -> None:
    if not model_dir.exists():
        os.rename(staged_model, model_dir)
        return
    moved: list[int] = []
    try:
        for number in numbers:
            target = model_dir / str(number)
            if target.exists():
                raise RepositoryError(f"version {number} of {model_dir.name} appeared during the build")
            os.rename(staged_model / str(number), target)
            moved.append(number)
        os.replace(staged_model / CONFIG, model_dir / CONFIG)
    except BaseException:
        for number in moved:  # put the repository back as it was
            os.rename(model_dir / str(number), staged_model / str(number))
        raise


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
        raise RepositoryError(f"{config_path} does not parse: {str(exc).splitlines()[0]}") from None
    served = set(config.version_policy.specific.versions)
    policy = config.version_policy.WhichOneof("policy_choice")
    versions = []
    for number in existing_versions(model_dir):
        lineage_path = model_dir / str(number) / LINEAGE
        lineage = json.loads(lineage_path.read_text()) if lineage_path.is_file() else {}
        is_served = (
            number in served
            if policy == "specific"
            else policy == "all" or number == max(existing_versions(model_dir))
        )
        versions.append(VersionInfo(number, model_dir / str(number), lineage, is_served))
    return ModelInfo(name, model_dir, config, tuple(versions))


def list_models(repository: Path) -> list[ModelInfo]:
    if not repository.is_dir():
        return []
    names = sorted(p.name for p in repository.iterdir() if (p / CONFIG).is_file())
    return [read_model(repository, n) for n in names]
