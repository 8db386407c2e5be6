"""deploy/release/Dockerfile: the release Job's image (the wheel with the `gateway` extra and
onnxruntime, no torch). No Docker engine runs here: the test checks the Dockerfile's instructions,
then runs `tritium release` with every package the image does not ship made unimportable."""

from __future__ import annotations

import re
import subprocess

from tests.deploy.conftest import DEPLOY
from tests.deploy.image_imports import run_without

DOCKERFILE = DEPLOY / "release" / "Dockerfile"
NOT_IN_IMAGE = ("torch", "onnx", "onnxscript", "sklearn", "transformers", "matplotlib", "pytriton", "docker")
ALLOWED = ("tritium.builder", "tritium.builder.cli")  # the command registration only


def _run(body: str) -> subprocess.CompletedProcess[str]:
    return run_without(body, blocked=(*NOT_IN_IMAGE, "tritium.builder"), allowed=ALLOWED, image="release")


def test_dockerfile_installs_the_gateway_extra_and_onnxruntime_only() -> None:
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    runs = [line.strip() for line in text.splitlines() if line.strip().startswith("RUN")]
    (install,) = [run for run in runs if "pip install" in run]
    assert '"$(ls /dist/tritium-*.whl)[gateway]"' in install and '"onnxruntime>=1.20"' in install
    assert '"numpy>=1.26,<2"' in install and not any("torch" in run for run in runs)
    users = re.findall(r"^USER (\S+)", text, flags=re.M)
    assert users and users[-1].split(":")[0] not in {"root", "0"}
    assert (DEPLOY / "release" / "Dockerfile.dockerignore").read_text() == (
        DEPLOY / "gateway" / "Dockerfile.dockerignore"
    ).read_text()


def test_a_release_of_a_built_version_needs_nothing_the_image_lacks(tmp_path) -> None:
    (tmp_path / "clf" / "1").mkdir(parents=True)
    body = f"""
import tritium.release.runner, tritium.release.fleet, tritium.release.analysis, tritium.release.discovery
import tritium.serving.models, onnxruntime
from tritium.cli import main
raise SystemExit(main(["release", "--model", "clf", "--version", "9", "--repository", {str(tmp_path)!r},
                       "--gateway", "http://127.0.0.1:9", "--releases", {str(tmp_path / "releases")!r}]))
"""
    result = _run(body)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "no version 9 of 'clf'" in result.stderr


def test_blocked_imports_really_fail() -> None:
    result = _run("import torch")
    assert result.returncode != 0 and "not in the release image" in result.stderr
