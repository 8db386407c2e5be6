"""`tritium release` on a real local Triton and a real gateway, under steady client load: every
answer is checked, and no client request may fail or get a wrong answer whatever the release does.

The model `clf` (tests/release/clf.py) has four versions: 1 and 2 answer alike, 3 answers alike but
slowly, 4 answers differently.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from tests.gateway.conftest import ADMIN_TOKEN
from tests.release.clf import MODEL, SteadyLoad, write_clf_repository
from tritium.cli import main
from tritium.release.record import Outcome, Phase, ReleaseStore
from tritium.serving.models import load_model, served_versions

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_clf_repository(tmp_path_factory.mktemp("release-repo") / "model_repository")


@pytest.fixture(scope="module")
def triton(local_triton, repository):  # type: ignore[no-untyped-def]
    return local_triton(repository)


@pytest.fixture
def stack(triton, repository, gateway_factory, tmp_path) -> Iterator[dict]:  # type: ignore[no-untyped-def]
    load_model(triton.grpc_url, MODEL, [1])  # every test starts from version 1 alone
    routes = {
        "routes": {MODEL: {"targets": [{"alias": "stable", "model": MODEL, "version": "1", "weight": 100}]}}
    }
    (tmp_path / "routes.yaml").write_text(yaml.safe_dump(routes))
    gw = gateway_factory(triton)
    yield {"gateway": gw, "triton": triton, "repository": repository, "releases": tmp_path / "releases"}


def _release(stack: dict, version: int, strategy: str = "canary", *extra: str) -> int:
    return main([
        "release", "--model", MODEL, "--version", str(version), "--strategy", strategy,
        "--gateway", stack["gateway"].url, "--token", ADMIN_TOKEN, "--triton", stack["triton"].grpc_url,
        "--repository", str(stack["repository"]), "--releases", str(stack["releases"]),
        "--steps", "50,100", "--window", "2", "--min-requests", "10", "--grace", "1",
        "--shadow-window", "2", "--ab-window", "3", *extra,
    ])  # fmt: skip


def _route(stack: dict) -> dict:
    return httpx.get(
        f"{stack['gateway'].url}/admin/routes/{MODEL}", headers={"authorization": f"Bearer {ADMIN_TOKEN}"}
    ).json()["route"]


def _record(stack: dict):  # type: ignore[no-untyped-def]
    (record,) = ReleaseStore(stack["releases"]).all(MODEL)[-1:]
    return record


def test_a_good_candidate_is_promoted_and_rollback_restores_the_previous_version(stack) -> None:
    with SteadyLoad(stack["gateway"].url) as load:
        assert _release(stack, 2) == 0
        record = _record(stack)
        assert record.outcome is Outcome.PROMOTED and record.phase is Phase.DONE
        assert [t["version"] for t in _route(stack)["targets"]] == ["2"]
        assert served_versions(stack["triton"].grpc_url, MODEL) == ["2"]  # version 1 unloaded after the grace
        assert main(["rollback", MODEL, "--gateway", stack["gateway"].url, "--token", ADMIN_TOKEN,
                     "--releases", str(stack["releases"])]) == 0  # fmt: skip
        time.sleep(1.0)
    assert [t["version"] for t in _route(stack)["targets"]] == ["1"]
    assert _record(stack).outcome is Outcome.ROLLED_BACK
    assert not load.failures and load.answers > 200, load.failures[:5]
    assert (stack["releases"] / MODEL / f"{record.id}.md").read_text().startswith(f"# Release {record.id}")


def test_a_slow_candidate_is_rolled_back_by_the_canary(stack) -> None:
    with SteadyLoad(stack["gateway"].url) as load:
        assert _release(stack, 3) == 9
    record = _record(stack)
    assert record.outcome is Outcome.ROLLED_BACK and "p99" in record.decisions[-1].reason
    assert [t["version"] for t in _route(stack)["targets"]] == ["1"]
    assert served_versions(stack["triton"].grpc_url, MODEL) == ["1"]  # the candidate unloaded
    assert not load.failures and load.answers > 100, load.failures[:5]


def test_a_disagreeing_candidate_is_stopped_at_the_shadow_before_any_client_sees_it(stack) -> None:
    with SteadyLoad(stack["gateway"].url) as load:
        assert _release(stack, 4, "shadow-canary") == 9
    record = _record(stack)
    assert record.outcome is Outcome.STOPPED and record.phase is Phase.VERIFIED
    shadow = next(d for d in record.decisions if d.phase == "shadow")
    assert not shadow.ok and shadow.evidence["shadow"]["mean_agreement"] < 0.5
    assert set(load.variants) == {"stable"}  # every client answer came from version 1
    assert [t["version"] for t in _route(stack)["targets"]] == ["1"] and _route(stack)["shadow"] is None
    assert served_versions(stack["triton"].grpc_url, MODEL) == ["1"]
    assert not load.failures, load.failures[:5]


def test_an_ab_split_is_judged_and_promoted(stack) -> None:
    with SteadyLoad(stack["gateway"].url) as load:
        assert _release(stack, 2, "ab") == 0
    record = _record(stack)
    ab = next(d for d in record.decisions if d.phase == "ab")
    assert ab.ok and {arm["arm"] for arm in ab.evidence["arms"]} == {"stable", "candidate"}
    assert record.outcome is Outcome.PROMOTED
    assert not load.failures, load.failures[:5]


def test_a_killed_release_is_resumed_to_a_consistent_end(stack) -> None:
    with SteadyLoad(stack["gateway"].url) as load:
        command = [
            sys.executable, "-m", "tritium.cli", "release", "--model", MODEL, "--version", "2",
            "--gateway", stack["gateway"].url, "--token", ADMIN_TOKEN, "--triton", stack["triton"].grpc_url,
            "--repository", str(stack["repository"]), "--releases", str(stack["releases"]),
            "--steps", "20,50,100", "--window", "2", "--min-requests", "10", "--grace", "1",
        ]  # fmt: skip
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 60
        while (_route(stack).get("canary") or {}).get("state") != "progressing":
            assert process.poll() is None and time.monotonic() < deadline, process.communicate()[0]
            time.sleep(0.1)
        process.send_signal(signal.SIGKILL)  # mid-canary: the route file holds the canary, half-exposed
        process.wait(timeout=10)
        record = _record(stack)
        assert record.outcome is Outcome.IN_PROGRESS and record.phase is Phase.VERIFIED
        assert main(["release", "--resume", record.id, "--gateway", stack["gateway"].url, "--token", ADMIN_TOKEN,
                     "--releases", str(stack["releases"]), "--repository", str(stack["repository"]),
                     "--grace", "1"]) == 0  # fmt: skip
    record = _record(stack)
    assert record.outcome is Outcome.PROMOTED and record.phase is Phase.DONE
    assert [t["version"] for t in _route(stack)["targets"]] == ["2"]
    assert not load.failures, load.failures[:5]


def test_bad_releases_are_one_line(stack, capsys) -> None:
    url = stack["gateway"].url
    base = ["release", "--gateway", url, "--token", ADMIN_TOKEN, "--repository", str(stack["repository"]),
            "--releases", str(stack["releases"])]  # fmt: skip
    cases = [
        ([*base, "--model", MODEL, "--version", "9"], 2, "no version 9 of 'clf'"),
        ([*base, "--version", "2"], 2, "--version needs --model"),
        ([*base, "--model", MODEL, "--version", "1"], 2, "version 1 already serves 'clf'"),
        ([*base, "--model", MODEL, "--version", "2", "--strategy", "yolo"], 2, "unknown --strategy 'yolo'"),
        ([*base, "--resume", "nope"], 2, "no release 'nope'"),
        (
            ["rollback", "nosuch", "--gateway", url, "--releases", str(stack["releases"])],
            2,
            "no promoted release",
        ),
    ]
    for argv, code, message in cases:
        assert main(argv) == code, argv
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err


def test_a_recipe_is_built_and_released_as_a_models_first_version(stack, tmp_path) -> None:
    """The whole path: build (accuracy gate), pick the fastest accepted variant, load it on the local
    Triton, check served parity on the recipe's inputs, and route a model that had no route yet."""
    from tests.builder.tiny_models import write_tiny_project

    recipe = write_tiny_project(tmp_path / "project", variants=[{"kind": "onnx-fp32"}])
    code = main([
        "release", str(recipe), "--gateway", stack["gateway"].url, "--token", ADMIN_TOKEN,
        "--triton", stack["triton"].grpc_url, "--repository", str(stack["repository"]),
        "--releases", str(stack["releases"]), "--grace", "0",
    ])  # fmt: skip
    assert code == 0
    (record,) = ReleaseStore(stack["releases"]).all("tiny")
    assert record.outcome is Outcome.PROMOTED and record.previous_version is None
    parity = next(d for d in record.decisions if d.phase == "parity")
    assert parity.ok and parity.evidence["max_abs"]["logits"] < 1e-5
    route = httpx.get(
        f"{stack['gateway'].url}/admin/routes/tiny", headers={"authorization": f"Bearer {ADMIN_TOKEN}"}
    ).json()
    assert route["route"]["targets"] == [
        {"alias": "stable", "model": "tiny", "version": str(record.candidate_version), "weight": 100}
    ]
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 16], "data": [0.5] * 16}]}
    assert httpx.post(f"{stack['gateway'].url}/v2/models/tiny/infer", json=body).status_code == 200
