"""`tritium tune` end to end on the real local Triton: `tiny` for the errors, `digits` for the searches.

Measurements are kept tiny (1 s per concurrency level, a few candidates): these tests check that the
command searches, measures, restores and writes correctly, not how fast a config is.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from tritium.cli import main
from tritium.serving import registry
from tritium.serving.control import TritonControl
from tritium.serving.ports import free_port
from tritium.serving.runtime_repo import read_config, write_config
from tritium.serving.tuning import session
from tritium.serving.tuning.loadgen import find_tool
from tritium.serving.tuning.search import Budget, Constraints, Mode
from tritium.serving.tuning.session import Observer, TuneSettings, run_tune

pytestmark = pytest.mark.skipif(
    find_tool("h2load") is None,
    reason="h2load is not installed: run scripts/bootstrap.sh (or scripts/install-load-generators.sh .venv/bin)",
)

FAST = ["--seconds", "1", "--max-concurrency", "4"]
CHILD_WITH_CTRL_C = (
    "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "from tritium.cli import main; sys.exit(main())"
)


def tune(url: str, *args: str, output: Path) -> int:
    return main(["tune", *args, "--triton", url, *FAST, "--output", str(output)])


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err, err
    return err


def temporary_model_gone(url: str, name: str) -> bool:
    with TritonControl(url) as control:
        try:
            return not control.is_model_ready(f"{name}__tune")
        except Exception:
            return True


# --- tiny: errors and refused candidates ---


def test_a_config_triton_refuses_is_skipped_with_its_reason(tiny_triton, tmp_path, capsys):
    code = tune(tiny_triton.grpc_url, "tiny", "--mode", "brute", "--space", "kind=cpu,gpu", output=tmp_path)
    out = capsys.readouterr().out
    assert code == 0, out
    record = json.loads((tmp_path / "tuning.json").read_text())
    statuses = {c["config"]["kind"]: (c["status"], c["reason"]) for c in record["candidates"]}
    assert statuses["gpu"][0] == "skipped" and "no GPUs are available" in statuses["gpu"][1]
    assert statuses["cpu"][0] == "measured" and record["chosen"]["kind"] == "cpu"
    assert (tmp_path / "tuning.png").stat().st_size > 10_000 and (tmp_path / "tuning.md").is_file()
    assert "do not transfer to the official image's native onnxruntime backend" in out
    assert "gpu" in out and "skipped: " in out and "no GPUs are available" in out
    assert record["valid_for"]["backend"].startswith("Python backend")
    assert temporary_model_gone(tiny_triton.grpc_url, "tiny")


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (["nope"], 2, "no model 'nope' on Triton"),
        (["tiny", "--version", "9"], 2, "has no version 9"),
        (["tiny", "--objective", "latency"], 2, "needs --min-throughput"),
        (["tiny", "--space", "instances=0"], 2, "at least 1"),
        (["tiny", "--reload"], 2, "--reload goes with --apply"),
        (["../etc"], 2, "is not a model name"),
    ],
)
def test_bad_input_is_one_line_and_changes_nothing(tiny_triton, tmp_path, capsys, args, code, words):
    assert tune(tiny_triton.grpc_url, *args, output=tmp_path) == code
    assert words in one_line_error(capsys)
    assert not (tmp_path / "tuning.json").exists() and temporary_model_gone(tiny_triton.grpc_url, "tiny")


def test_no_load_generator_is_one_line_before_anything_changes(tiny_triton, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no h2load on it ...
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))  # ... nor beside the running Python
    with TritonControl(tiny_triton.grpc_url) as control:
        before = control.model_config("tiny")
    assert tune(tiny_triton.grpc_url, "tiny", "--in-place", output=tmp_path) == 6
    assert one_line_error(capsys).endswith(
        "the load generator h2load is not installed — apt-get install -y nghttp2-client, or "
        "scripts/install-load-generators.sh .venv/bin"
    )
    with TritonControl(tiny_triton.grpc_url) as control:
        assert control.model_config("tiny") == before


def test_an_unreachable_triton_is_one_line(tmp_path, capsys):
    assert tune(f"127.0.0.1:{free_port()}", "tiny", output=tmp_path) == 6
    assert "is not reachable" in one_line_error(capsys)


def test_a_constraint_no_candidate_meets_reports_the_closest(tiny_triton, tmp_path, capsys):
    code = tune(
        tiny_triton.grpc_url, "tiny", "--mode", "brute", "--space", "queue_delay_us=0,5000", "--p99-ms", "0.001",
        "--apply", output=tmp_path,
    )  # fmt: skip
    assert code == 4
    err = one_line_error(capsys)
    assert "no candidate met p99 ≤ 0.001 ms; closest: max batch 8, batching 0 µs" in err
    assert "nothing was applied" in err
    assert (tmp_path / "tuning.json").is_file()  # the measurements are kept all the same
    assert temporary_model_gone(tiny_triton.grpc_url, "tiny")


def test_a_triton_without_model_control_is_one_line(local_triton, tiny_repository, tmp_path, capsys):
    triton = local_triton(tiny_repository, model_control_mode="none")
    try:
        for where in ([], ["--in-place"]):  # in place: the same line, not a failed "restore" of nothing
            assert tune(triton.grpc_url, "tiny", *where, output=tmp_path) == 6
            assert one_line_error(capsys).endswith(
                "does not allow model control (it was started without explicit model control) — restart it "
                "with --model-control-mode=explicit (`tritium serve` does)"
            )
    finally:
        triton.stop()


def test_answers_that_differ_from_onnxruntime_are_rejected_and_never_win(
    local_triton, tiny_repository_copy, tmp_path, capsys
):
    # The server serves the real version 2 (y = 2·Wx + b); the repository given to tune holds version 1's
    # file under version 2, so in place every answer of the live model differs from onnxruntime's.
    triton = local_triton(tiny_repository_copy)
    registry.forget(triton.grpc_url)  # as for a server tune did not start: --repository is used
    other = tmp_path / "other"
    shutil.copytree(tiny_repository_copy, other)
    shutil.copyfile(other / "tiny" / "1" / "model.onnx", other / "tiny" / "2" / "model.onnx")
    try:
        code = main([
            "tune", "tiny", "--triton", triton.grpc_url, "--repository", str(other), "--in-place", "--mode", "brute",
            "--space", "instances=1,2", *FAST, "--output", str(tmp_path / "report"),
        ])  # fmt: skip
        assert code == 4
        assert "no candidate could be measured" in one_line_error(capsys)
        record = json.loads((tmp_path / "report" / "tuning.json").read_text())
        assert [c["status"] for c in record["candidates"]] == ["rejected", "rejected"]
        assert "differs from onnxruntime" in record["candidates"][0]["reason"]
        assert record["chosen"] is None
    finally:
        triton.stop()


def test_ctrl_c_in_place_puts_the_original_config_back(local_triton, tiny_repository_copy, tmp_path):
    triton = local_triton(tiny_repository_copy)
    with TritonControl(triton.grpc_url) as control:
        original = control.model_config("tiny")
    # The child gets Ctrl-C's usual handler whatever this process inherited: a Python started with SIGINT
    # ignored (as an earlier test may leave it in this process) keeps ignoring it.
    command = [
        sys.executable, "-c", CHILD_WITH_CTRL_C, "tune", "tiny",
        "--triton", triton.grpc_url, "--in-place", "--mode", "brute", "--space", "instances=1,2,3",
        "--seconds", "1", "--max-concurrency", "4", "--output", str(tmp_path),
    ]  # fmt: skip
    tuning = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        changed = None
        with TritonControl(triton.grpc_url) as control:
            deadline = time.monotonic() + 60
            while changed is None and time.monotonic() < deadline and tuning.poll() is None:
                count = control.model_config("tiny").instance_group[0].count
                changed = count if count != original.instance_group[0].count else None
                time.sleep(0.05)
        assert changed in (2, 3)  # a candidate is live: Ctrl-C now
        tuning.send_signal(signal.SIGINT)
        out = tuning.communicate(timeout=120)[0]
    finally:
        if tuning.poll() is None:
            tuning.kill()
    assert tuning.returncode == 130, out
    assert "interrupted: the server serves the original config" in out
    with TritonControl(triton.grpc_url) as control:
        assert control.model_config("tiny") == original
        assert sorted(m.version for m in control.index() if m.state == "READY") == ["1", "2"]
    triton.stop()


# --- digits ---


@pytest.fixture(scope="module")
def digits_repository(example_repository, tmp_path_factory) -> Path:
    repository = tmp_path_factory.mktemp("tune-digits") / "model_repository"
    shutil.copytree(example_repository / "digits", repository / "digits")
    return repository


@pytest.fixture(scope="module")
def digits_triton(local_triton, digits_repository):
    triton = local_triton(digits_repository, models=["digits"])
    yield triton
    triton.stop()


def _ready_versions(url: str, name: str) -> list[str]:
    with TritonControl(url) as control:
        return sorted((m.version for m in control.index() if m.name == name and m.state == "READY"), key=int)


def test_quick_search_on_digits_picks_a_config_and_apply_writes_one_triton_loads(
    local_triton, example_repository, tmp_path, capsys
):
    repository = tmp_path / "model_repository"
    shutil.copytree(example_repository / "digits", repository / "digits")
    config_path = repository / "digits" / "config.pbtxt"
    config = read_config(config_path)
    config.dynamic_batching.max_queue_delay_microseconds = 20_000  # 20 ms: over a 15 ms p99 at any load
    write_config(config, config_path)
    policy = config.version_policy
    triton = local_triton(repository, models=["digits"])
    try:
        code = tune(
            triton.grpc_url, "digits", "--p99-ms", "15", "--space", "queue_delay_us=500,20000",
            "--space", "instances=1,2", "--apply", "--reload", output=tmp_path / "report",
        )  # fmt: skip
        out = capsys.readouterr().out
        assert code == 0, out
        record = json.loads((tmp_path / "report" / "tuning.json").read_text())
        assert record["mode"] == "quick" and record["current"]["max_queue_delay_us"] == 20_000
        assert (
            record["candidates"][0]["config"] == record["current"]
        )  # the climb starts from the current config
        assert record["chosen"]["max_queue_delay_us"] == 500
        assert {"setting": "max_queue_delay_us", "before": 20000, "after": 500} in record["changes"]
        chosen = next(c for c in record["candidates"] if c["config"] == record["chosen"])
        assert any(p["p99_ms"] <= 15 and p["triton"]["mean_batch"] >= 1 for p in chosen["points"])
        # written through the repository writer: version policy as it was, the record beside the lineage
        written = read_config(config_path)
        assert written.dynamic_batching.max_queue_delay_microseconds == 500
        assert written.version_policy == policy and written.platform == "onnxruntime_onnx"
        (tuning_record,) = (repository / "digits" / str(record["version"])).glob("tuning-*.json")
        kept = json.loads(tuning_record.read_text())
        assert kept["changes"] == record["changes"] and kept["valid_for"]["machine"]["cores"] >= 1
        # --reload: Triton serves the written config, every version of the policy ready
        with TritonControl(triton.grpc_url) as control:
            assert control.model_config("digits").dynamic_batching.max_queue_delay_microseconds == 500
        assert _ready_versions(triton.grpc_url, "digits") == [str(v) for v in policy.specific.versions]
        assert "reloaded digits" in out
    finally:
        triton.stop()


class LiveClient(threading.Thread):
    """Sends digits requests to the live model the whole time and watches its config never change."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.stop = threading.Event()
        self.sent = self.failed = 0
        self.configs: set[str] = set()

    def run(self) -> None:
        client = grpcclient.InferenceServerClient(self.url)
        pixels = np.random.default_rng(1).random((1, 1, 8, 8), dtype=np.float32)
        tensor = grpcclient.InferInput("pixels", [1, 1, 8, 8], "FP32")
        tensor.set_data_from_numpy(pixels)
        while not self.stop.is_set():
            try:
                client.infer("digits", [tensor])
            except Exception:
                self.failed += 1
            self.sent += 1
            if self.sent % 20 == 0:
                self.configs.add(str(client.get_model_config("digits").config))
            time.sleep(0.01)
        client.close()


def test_brute_search_on_a_four_point_grid_leaves_live_traffic_untouched(digits_triton, tmp_path, capsys):
    url = digits_triton.grpc_url
    with TritonControl(url) as control:
        before_config = control.model_config("digits")
        version = _ready_versions(url, "digits")[-1]
        before_count = int(control.statistics("digits", version).get("inference_count", 0))
    live = LiveClient(url)
    live.start()
    try:
        code = tune(
            url, "digits", "--mode", "brute", "--space", "instances=1,2", "--space", "queue_delay_us=500,2000",
            output=tmp_path,
        )  # fmt: skip
    finally:
        live.stop.set()
        live.join(30)
    out = capsys.readouterr().out
    assert code == 0, out
    record = json.loads((tmp_path / "tuning.json").read_text())
    grid = {(c["config"]["instances"], c["config"]["max_queue_delay_us"]) for c in record["candidates"]}
    assert grid == {(1, 500), (1, 2000), (2, 500), (2, 2000)} and len(record["candidates"]) == 4
    assert record["stop"] == "exhausted" and record["chosen"] is not None
    assert all(c["status"] == "measured" and c["points"] for c in record["candidates"])
    # the live model: never failed, never reloaded (a reload resets its counts), never reconfigured
    assert live.sent > 50 and live.failed == 0
    assert live.configs == {str(before_config)}
    with TritonControl(url) as control:
        assert control.model_config("digits") == before_config
        after_count = int(control.statistics("digits", version).get("inference_count", 0))
    assert after_count - before_count == live.sent
    assert temporary_model_gone(url, "digits")


def test_in_place_restores_the_original_config_after_a_failure_mid_search(digits_triton, digits_repository):
    url = digits_triton.grpc_url
    with TritonControl(url) as control:
        original = control.model_config("digits")
    versions = _ready_versions(url, "digits")
    seen: dict[str, object] = {}

    class FailOnSecondCandidate(Observer):
        def level_measured(self, index, point) -> None:
            if index == 2:
                with TritonControl(url) as control:
                    seen["during"] = control.model_config("digits")
                raise RuntimeError("injected failure mid-search")

    settings = TuneSettings(
        model="digits", url=url, repository=digits_repository, mode=Mode.brute, in_place=True,
        space=("instances=1,2",), seconds=1, max_concurrency=4, budget=Budget(300), constraints=Constraints(),
    )  # fmt: skip
    with pytest.raises(RuntimeError, match="injected failure"):
        run_tune(settings, FailOnSecondCandidate())
    assert seen["during"].instance_group[0].count == 2  # candidate 2 was live when it failed
    with TritonControl(url) as control:
        assert control.model_config("digits") == original
    assert _ready_versions(url, "digits") == versions


def test_the_validity_statement_names_server_backend_and_machine():
    info = session.machine()
    assert info["cores"] == len(os.sched_getaffinity(0)) and info["cpu"]
