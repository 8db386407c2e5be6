"""One import namespace: the wheel and sdist hold exactly `tritium`, the wheel installs cleanly with
only the gateway extra into a fresh virtualenv outside the repository, and a checkout's root on
sys.path does not shadow the installed mapping (docs/layout.md)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.conftest import TINY_IN, TINY_MODEL, tiny_expected
from tests.gateway.conftest import free_port
from tests.gateway.running import wait_until_ready

REPO = Path(__file__).resolve().parents[2]


def _run(command: list[str], *, cwd: Path, timeout: float = 600, env: dict | None = None):
    return subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False, env=env
    )


def test_the_repository_root_on_sys_path_does_not_shadow_the_package() -> None:
    """`python -c` from the root puts the root first on sys.path: no root folder may be `tritium`."""
    assert not (REPO / "tritium").exists()
    code = (
        "import tritium, tritium.builder.recipe, tritium.serving.cli, tritium.gateway.routes;"
        "print(tritium.__file__); print(tritium.builder.recipe.__file__)"
    )
    result = _run([sys.executable, "-c", code], cwd=REPO)
    assert result.returncode == 0, result.stderr
    core_init, recipe = result.stdout.split()
    assert Path(core_init) == REPO / "core" / "__init__.py"
    assert Path(recipe) == REPO / "builder" / "recipe.py"


PACKAGED = ("pyproject.toml", "README.md", "core", "builder", "serving", "gateway", "release")


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`python -m build`: the sdist, then the wheel built from that sdist — from a copy of the packaged
    sources, since setuptools writes its egg-info into the source tree."""
    source = tmp_path_factory.mktemp("source")
    for name in PACKAGED:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(REPO / name, source / name)
    out = tmp_path_factory.mktemp("dist")
    result = _run([sys.executable, "-m", "build", "--outdir", str(out), str(source)], cwd=out)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "SetuptoolsDeprecationWarning" not in result.stdout + result.stderr
    return out


def test_the_wheel_installs_one_top_level_name(dist: Path) -> None:
    (wheel,) = dist.glob("tritium-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {name.split("/")[0] for name in names} == {"tritium", wheel.name.split("-py")[0] + ".dist-info"}
    for module in (
        "cli",
        "errors",
        "extras",
        "builder/pipeline",
        "builder/steps/base",
        "serving/local",
        "gateway/app",
    ):
        assert f"tritium/{module}.py" in names, module
    assert "tritium/serving/templates/model.py" in names  # the Python-backend model template
    assert not any(name.startswith("tritium/tests") or "__pycache__" in name for name in names)


def test_the_sdist_rebuilds_the_same_layout(dist: Path) -> None:
    (sdist,) = dist.glob("tritium-*.tar.gz")
    with tarfile.open(sdist) as archive:
        members = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    for path in ("pyproject.toml", "README.md", "core/cli.py", "builder/pipeline.py", "gateway/app.py"):
        assert path in members, path
    assert "serving/templates/model.py" in members


@pytest.fixture(scope="module")
def gateway_venv(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv outside the repository with the wheel and only its `gateway` extra."""
    venv = tmp_path_factory.mktemp("gateway-venv") / "venv"
    assert _run([sys.executable, "-m", "venv", str(venv)], cwd=venv.parent).returncode == 0
    (wheel,) = dist.glob("tritium-*.whl")
    # numpy<2: the same pin the serving environment needs (the core dependency allows 1.26+).
    install = _run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", f"{wheel}[gateway]", "numpy<2"],
        cwd=venv.parent,
    )
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]
    return venv


def _clean_env(venv: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


@pytest.mark.slow
def test_gateway_only_install_has_no_builder_or_serving_dependencies(gateway_venv: Path) -> None:
    code = "import importlib.util as u; print([m for m in ('torch', 'onnx', 'onnxruntime', 'pytriton', 'docker') if u.find_spec(m)])"
    result = _run(
        [str(gateway_venv / "bin" / "python"), "-c", code], cwd=gateway_venv, env=_clean_env(gateway_venv)
    )
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stdout + result.stderr


@pytest.mark.slow
def test_gateway_only_install_has_every_command_and_hints_missing_extras(gateway_venv: Path) -> None:
    tritium = str(gateway_venv / "bin" / "tritium")
    env = _clean_env(gateway_venv)
    help_text = _run([tritium, "--help"], cwd=gateway_venv, env=env)
    assert help_text.returncode == 0, help_text.stderr
    for command in ("build", "serve", "gateway", "models", "routes"):
        assert command in help_text.stdout

    recipe = gateway_venv.parent / "recipe.yaml"
    recipe.write_text("name: x\n")
    for argv, extra in (
        ([tritium, "build", str(recipe)], "builder"),
        ([tritium, "serve", "--check"], "serve"),
    ):
        result = _run(argv, cwd=gateway_venv.parent, env=env)
        assert result.returncode == 6, result.stdout + result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
        assert f"pip install 'tritium[{extra}]'" in lines[0]

    imported = _run(
        [str(gateway_venv / "bin" / "python"), "-c", "import tritium.builder.pipeline"],
        cwd=gateway_venv,
        env=env,
    )
    assert imported.returncode != 0
    last = imported.stderr.strip().splitlines()[-1]
    assert last.startswith("tritium.extras.MissingExtraError: the builder needs 'onnx'"), last
    assert "pip install 'tritium[builder]'" in last


@pytest.mark.slow
def test_gateway_only_install_serves(gateway_venv: Path, tiny_triton, tmp_path: Path) -> None:
    port = free_port()
    command = [
        str(gateway_venv / "bin" / "tritium"), "gateway",
        "--port", str(port), "--no-grpc",
        "--routes", str(tmp_path / "routes.yaml"),
        "--triton-http", tiny_triton.http_url, "--triton-grpc", tiny_triton.grpc_url,
        "--log-level", "warning",
    ]  # fmt: skip
    process = subprocess.Popen(
        command,
        cwd=tmp_path,
        env=_clean_env(gateway_venv),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_ready(url, process)
        x = np.arange(2 * TINY_IN, dtype=np.float32).reshape(2, TINY_IN)
        body = {
            "inputs": [{"name": "x", "datatype": "FP32", "shape": [2, TINY_IN], "data": x.ravel().tolist()}]
        }
        answer = httpx.post(f"{url}/v2/models/{TINY_MODEL}/versions/2/infer", json=body, timeout=10)
        assert answer.status_code == 200, answer.text
        got = np.array(answer.json()["outputs"][0]["data"], dtype=np.float32).reshape(2, -1)
        np.testing.assert_allclose(got, tiny_expected(x, 2), rtol=1e-5, atol=1e-5)
        metrics = httpx.get(f"{url}/metrics", timeout=5).text
        assert "tritium_gateway_requests_total" in metrics
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=30)
    assert "Traceback" not in output, output
