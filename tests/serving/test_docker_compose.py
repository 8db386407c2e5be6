"""docker-compose.yml (and its CPU override) checked offline against the Compose schema."""

import re
from pathlib import Path

import jsonschema
import pytest

from tests.serving.compose_schema import load, merge, validate

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose() -> dict:
    return load(ROOT / "docker-compose.yml")


@pytest.fixture(scope="module")
def cpu(compose) -> dict:
    return merge(compose, load(ROOT / "deploy" / "compose" / "cpu.yml"))


def test_compose_files_follow_the_compose_spec(compose, cpu):
    validate(compose)
    validate(cpu)


def test_the_schema_catches_mistakes(compose):
    broken = merge(compose, {"services": {"triton": {"healthcheck": {"interval": 10, "probe": "x"}}}})
    with pytest.raises(jsonschema.ValidationError):
        validate(broken)


def test_triton_serves_the_repository_from_the_official_image(compose):
    triton = compose["services"]["triton"]
    default_image = re.search(r":-([^}]+)}", triton["image"]).group(1)
    assert re.fullmatch(r"nvcr\.io/nvidia/tritonserver:\d\d\.\d\d-py3", default_image)
    assert triton["image"].startswith("${TRITON_IMAGE:-")
    assert "./model_repository:/models:ro" in triton["volumes"]
    assert "--model-repository=/models" in triton["command"]
    assert "--model-control-mode=explicit" in triton["command"]
    assert {p.rsplit(":", 1)[1] for p in triton["ports"]} == {"8000", "8001", "8002"}
    assert "/v2/health/ready" in " ".join(triton["healthcheck"]["test"])


def test_gpu_reserved_by_default_and_not_in_the_cpu_variant(compose, cpu):
    devices = compose["services"]["triton"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}]
    triton_cpu = cpu["services"]["triton"]
    assert "deploy" not in triton_cpu
    assert triton_cpu["image"] == compose["services"]["triton"]["image"]
    assert triton_cpu["healthcheck"] == compose["services"]["triton"]["healthcheck"]
