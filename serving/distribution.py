"""Where the bundled Triton lives, and a backend directory of our own for it.

The ``nvidia-pytriton`` wheel ships a ``tritonserver`` binary with the Python backend only. The
backend needs ``triton_python_backend_stub`` for *this* Python next to ``libtriton_python.so``;
instead of copying it into site-packages we build a small link tree in a directory we own.
"""

from __future__ import annotations

import os
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from tritium.errors import UnavailableError
from tritium.extras import Extra, MissingExtraError

_INSTALL_HINT = "reinstall the serve extra: pip install --force-reinstall 'tritium[serve]'"


@dataclass(frozen=True)
class TritonDistribution:
    """The files of the ``tritonserver`` shipped in the nvidia-pytriton wheel."""

    root: Path

    @property
    def binary(self) -> Path:
        return self.root / "bin" / "tritonserver"

    @property
    def python_backend(self) -> Path:
        return self.root / "backends" / "python"

    @property
    def caches(self) -> Path:
        return self.root / "caches"

    @property
    def libs(self) -> Path:
        return self.root.parent.parent / "nvidia_pytriton.libs"

    def stub(self, python_version: str) -> Path:
        return self.root / "python_backend_stubs" / python_version / "triton_python_backend_stub"


def find_distribution() -> TritonDistribution:
    """Locate the bundled Triton, or raise :class:`UnavailableError` saying how to install it."""
    try:
        import pytriton
    except ModuleNotFoundError as exc:
        raise MissingExtraError("pytriton", Extra.serve, what="the local Triton") from exc
    dist = TritonDistribution(Path(pytriton.__file__).resolve().parent / "tritonserver")
    if not dist.binary.is_file():
        raise UnavailableError(f"no tritonserver binary at {dist.binary}", hint=_INSTALL_HINT)
    return dist


def check_numpy(version: str | None = None) -> None:
    """Refuse numpy 2 in the environment the Python-backend stubs run.

    The bundled stub (Triton 2.51 in nvidia-pytriton 0.7, which pins numpy<2) is built against
    numpy 1.x. Under numpy 2 it answers every request with status OK and *empty* output tensors
    (measured: gRPC `raw_output_contents` of 0 bytes, REST binary `binary_data_size: 0`, REST JSON
    a 500), so serving would silently return nothing.
    """
    if version is None:
        import numpy

        version = numpy.__version__
    if int(version.split(".")[0]) >= 2:
        raise UnavailableError(
            f"numpy {version} is installed, and the bundled Triton's Python backend (built against "
            "numpy 1.x) answers with empty outputs under numpy 2",
            hint="install numpy<2 where tritium serves: pip install 'numpy<2'",
        )


def current_python_version() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def prepare_backend_dir(dist: TritonDistribution, target: Path, python_version: str | None = None) -> Path:
    """Write ``target/python/`` linking the Python backend and the stub for ``python_version``.

    Returns ``target``, to pass as ``--backend-directory``. Idempotent.
    """
    version = python_version or current_python_version()
    stub = dist.stub(version)
    if not stub.is_file():
        raise UnavailableError(
            f"the bundled Triton has no Python backend stub for Python {version}",
            hint="use Python 3.8-3.13",
        )
    python_dir = target / "python"
    python_dir.mkdir(parents=True, exist_ok=True)
    links = {
        "libtriton_python.so": dist.python_backend / "libtriton_python.so",
        "triton_python_backend_utils.py": dist.python_backend / "triton_python_backend_utils.py",
        "triton_python_backend_stub": stub,
    }
    for name, source in links.items():
        link = python_dir / name
        if link.is_symlink() and link.resolve() == source.resolve():
            continue
        link.unlink(missing_ok=True)
        link.symlink_to(source)
    return target


def server_environment(dist: TritonDistribution, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for ``tritonserver`` so that its Python stubs run *this* interpreter.

    The stub runs Python in isolated mode and finds its environment from the first ``python3`` on
    ``PATH``; it must also load the libpython of this interpreter, not the system's.
    """
    env = dict(os.environ if base is None else base)
    venv_bin = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([venv_bin, *filter(None, [env.get("PATH")])])
    lib_dirs = [sysconfig.get_config_var("LIBDIR"), str(dist.libs)]
    env["LD_LIBRARY_PATH"] = os.pathsep.join(
        [*filter(None, lib_dirs), *filter(None, [env.get("LD_LIBRARY_PATH")])]
    )
    return env
