"""Load the model a recipe names: a PyTorch factory (+ state dict), a TorchScript file or an ONNX file."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tritium.builder.imports import import_callable
from tritium.builder.recipe import LoadedRecipe, OnnxSource, TorchFactorySource, TorchScriptSource
from tritium.errors import ModelSourceError, cause_text


@dataclass(frozen=True)
class SourceModel:
    """The baseline model: a torch module (eager or TorchScript) or an ONNX file."""

    kind: str  # "pytorch" | "torchscript" | "onnx"
    module: Any | None  # torch.nn.Module for pytorch/torchscript
    onnx_path: Path | None
    files: tuple[Path, ...]  # files whose bytes define the model (hashed for lineage)

    @property
    def sha256(self) -> str:
        digest = hashlib.sha256()
        for path in self.files:
            digest.update(path.name.encode())
            digest.update(file_sha256(path).encode())
        return digest.hexdigest()

    @property
    def size_bytes(self) -> int:
        """Bytes of weights: parameters + buffers of a torch module, or the ONNX file."""
        if self.module is None:
            return self.onnx_path.stat().st_size
        tensors = [*self.module.parameters(), *self.module.buffers()]
        return sum(t.numel() * t.element_size() for t in tensors)

    @property
    def is_torch(self) -> bool:
        return self.module is not None


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _existing_file(path: Path, what: str) -> Path:
    if not path.exists():
        raise ModelSourceError(f"{what} {path} does not exist", hint="fix the path in the recipe's 'source'")
    if not path.is_file():
        raise ModelSourceError(f"{what} {path} is not a file")
    try:
        with path.open("rb") as handle:
            handle.read(1)
    except OSError as exc:
        raise ModelSourceError(f"{what} {path} cannot be read: {exc.strerror}") from None
    return path


def _load_factory(loaded: LoadedRecipe, source: TorchFactorySource) -> SourceModel:
    import torch

    factory = import_callable(
        source.factory,
        what="model factory",
        search_dirs=(loaded.base_dir, Path.cwd()),
        error=ModelSourceError,
    )
    try:
        module = factory(**source.kwargs)
    except Exception as exc:
        raise ModelSourceError(
            f"model factory {source.factory!r} raised {type(exc).__name__}: {exc}"
        ) from None
    if not isinstance(module, torch.nn.Module):
        raise ModelSourceError(
            f"model factory {source.factory!r} returned {type(module).__name__}, not a torch.nn.Module"
        )
    module_file = Path(getattr(__import__(factory.__module__, fromlist=["_"]), "__file__", "") or "")
    files = [module_file] if module_file.is_file() else []
    if source.state_dict is not None:
        path = _existing_file(loaded.resolve(source.state_dict), "state dict")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise ModelSourceError(f"state dict {path} cannot be loaded: {exc}") from None
        try:
            module.load_state_dict(state)
        except (RuntimeError, TypeError, AttributeError) as exc:
            first = str(exc).strip().splitlines()[0:2]
            raise ModelSourceError(
                f"state dict {path} does not fit the factory's model: {' '.join(first)}",
                hint="check that the factory builds the architecture the weights were trained with",
            ) from None
        files.append(path)
    return SourceModel("pytorch", module.eval(), None, tuple(files))


def _load_torchscript(loaded: LoadedRecipe, source: TorchScriptSource) -> SourceModel:
    import torch

    path = _existing_file(loaded.resolve(source.path), "TorchScript file")
    try:
        module = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:
        raise ModelSourceError(f"{path} is not a loadable TorchScript file: {cause_text(exc)}") from None
    return SourceModel("torchscript", module.eval(), None, (path,))


def _load_onnx(loaded: LoadedRecipe, source: OnnxSource) -> SourceModel:
    import onnx

    path = _existing_file(loaded.resolve(source.path), "ONNX file")
    try:
        onnx.checker.check_model(str(path))
    except Exception as exc:
        raise ModelSourceError(f"{path} is not a valid ONNX model: {cause_text(exc)}") from None
    return SourceModel("onnx", None, path, (path,))


def load_source(loaded: LoadedRecipe) -> SourceModel:
    source = loaded.recipe.source
    if isinstance(source, TorchFactorySource):
        return _load_factory(loaded, source)
    if isinstance(source, TorchScriptSource):
        return _load_torchscript(loaded, source)
    if isinstance(source, OnnxSource):
        return _load_onnx(loaded, source)
    raise AssertionError(source)
