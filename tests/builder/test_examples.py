"""The bundled examples, built by the real builder (issue #2's acceptance checks)."""

import json

import numpy as np
import onnxruntime as ort
import pytest

from tritium.builder.pipeline import ACCEPTED, REJECTED
from tritium.builder.repository import read_model

pytestmark = pytest.mark.slow


def test_digits_meets_accuracy_and_writes_three_versions(example_builds):
    repository, results = example_builds
    digits = results["digits"]
    assert digits.baseline.decision.checks[0].value >= 0.97
    assert {v.name: v.status for v in digits.variants} == {
        "fp32": ACCEPTED,
        "int8-static": ACCEPTED,
        "fp16": ACCEPTED,
        "qat-int8": ACCEPTED,
        "prune-unstructured-90": ACCEPTED,
        "prune-unstructured-90.int8-static": ACCEPTED,
        "prune-structured-50": ACCEPTED,
        "distill": ACCEPTED,
    }, {v.name: v.reason for v in digits.variants}
    model = read_model(repository, "digits")
    assert [v.lineage["variant"] for v in model.versions] == [
        "fp32",
        "int8-static",
        "fp16",
        "qat-int8",
        "prune-unstructured-90",
        "prune-unstructured-90.int8-static",
        "prune-structured-50",
        "distill",
    ]
    by_name = {v.name: v for v in digits.variants}
    assert by_name["int8-static"].size_bytes * 3 < by_name["fp32"].size_bytes


def test_digits_int8_version_classifies_the_test_split(example_builds):
    repository, _ = example_builds
    from examples.build import EXAMPLES

    data = np.load(EXAMPLES / "digits" / "artifacts" / "val.npz")
    session = ort.InferenceSession(
        str(repository / "digits" / "2" / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    accuracy = (session.run(None, {"pixels": data["pixels"]})[0].argmax(1) == data["labels"]).mean()
    assert accuracy >= 0.97


def test_minilm_gate_rejects_per_tensor_and_accepts_per_channel(example_builds):
    repository, results = example_builds
    minilm = {v.name: v for v in results["minilm"].variants}
    per_tensor, per_channel = minilm["int8-dynamic"], minilm["int8-dynamic-per-channel"]
    assert per_tensor.status == REJECTED and "cosine" in per_tensor.reason
    assert per_channel.status == ACCEPTED
    assert per_channel.decision.checks[0].value >= 0.99
    retrieval = per_channel.decision.checks[1]
    assert retrieval.metric == "neighbor_top1"
    assert 0.9 <= retrieval.baseline < 1.0  # near-miss pairs keep the retrieval check from saturating
    assert retrieval.drop <= 0.02
    assert minilm["fp32"].size_bytes / per_channel.size_bytes >= 3.9
    written = [v.lineage["variant"] for v in read_model(repository, "minilm").versions]
    assert "int8-dynamic" not in written and "int8-dynamic-per-channel" in written


def test_minilm_accuracy_control_brings_per_tensor_int8_within_budget(example_builds):
    repository, results = example_builds
    minilm = {v.name: v for v in results["minilm"].variants}
    controlled = minilm["int8-dynamic-controlled"]
    assert controlled.status == ACCEPTED, controlled.reason
    assert minilm["int8-dynamic"].status == REJECTED  # the same quantization without the search
    primary, retrieval = controlled.decision.checks
    assert primary.drop <= 0.01 and retrieval.drop <= 0.02
    trace = controlled.artifact.accuracy_control
    assert 1 <= len(trace.excluded) <= 6 and trace.result.outcome.value == "within-budget"
    assert all(node.endswith("/MatMul") for node in trace.excluded)
    ref = results["minilm"].version_of("int8-dynamic-controlled")
    lineage = json.loads((repository / "minilm" / str(ref.version) / "lineage.json").read_text())
    assert lineage["accuracy_control"]["excluded_nodes"] == trace.excluded
    assert "accuracy_control.dataset" in lineage["accuracy_control"]["search_set"]
    report = results["minilm"].reports["markdown"].read_text()
    assert "## Accuracy control: int8-dynamic-controlled (accepted)" in report


def test_digits_pruning_and_distillation(example_builds):
    _, results = example_builds
    digits = {v.name: v for v in results["digits"].variants}
    fp32 = digits["fp32"].stats
    pruned, stacked = digits["prune-unstructured-90"], digits["prune-unstructured-90.int8-static"]
    assert abs(pruned.stats.sparsity - 0.9) <= 0.01 and pruned.decision.checks[0].drop <= 0.01
    assert fp32.raw_bytes / pruned.stats.compressed_bytes >= 7  # xz; measured 7.47x
    assert fp32.raw_bytes / stacked.stats.compressed_bytes >= 10  # measured 23x
    structured = digits["prune-structured-50"]
    assert structured.stats.parameters * 3.5 < fp32.parameters
    student = digits["distill"].artifact.training.details
    assert student["parameter_reduction"] >= 4 and "value" in student["control"]
    report = results["digits"].reports["markdown"].read_text()
    assert "## Training: distill (accepted)" in report and "control (same student" in report


def test_digits_qat_next_to_static_int8(example_builds):
    _, results = example_builds
    digits = {v.name: v for v in results["digits"].variants}
    qat, static = digits["qat-int8"], digits["int8-static"]
    assert qat.status == ACCEPTED and qat.decision.checks[0].drop <= 0.01
    assert qat.size_bytes * 3 < digits["fp32"].size_bytes  # INT8 weights
    assert qat.performance.accepted and static.performance.accepted
    assert qat.artifact.steps[0].name == "qat-fine-tune"
    assert "## Training: qat-int8 (accepted)" in results["digits"].reports["markdown"].read_text()


def test_minilm_versions_take_dynamic_batch_and_sequence(example_builds):
    repository, _ = example_builds
    from examples.minilm.minilm_model import encode, tokenize

    sentences = [
        "A kitten naps on the couch.",
        "Share prices dropped steeply in today's trading after the news.",
    ]
    reference = encode(sentences)
    model = read_model(repository, "minilm")
    assert list(model.config.input[0].dims) == [-1]
    for version in model.versions:
        session = ort.InferenceSession(str(version.path / "model.onnx"), providers=["CPUExecutionProvider"])
        for batch in (tokenize(sentences[:1]), tokenize(sentences)):
            out = session.run(None, batch)[0]
            assert out.shape == (len(batch["input_ids"]), 384)
        cosine = float(np.sum(out * reference, axis=1).min())
        assert cosine >= 0.98, (version.lineage["variant"], cosine)


def test_each_version_has_complete_lineage(example_builds):
    repository, _ = example_builds
    for name in ("digits", "minilm"):
        for version in read_model(repository, name).versions:
            lineage = json.loads((version.path / "lineage.json").read_text())
            assert lineage["version"] == version.version
            for key in ("source", "recipe", "steps", "tools", "metric", "size_bytes", "latency", "build_id"):
                assert lineage[key], (name, version.version, key)


def test_report_and_plot_per_build(example_builds):
    _, results = example_builds
    for result in results.values():
        assert result.reports["markdown"].is_file() and result.reports["html"].is_file()
        assert result.reports["plot"].stat().st_size > 10_000


def test_latency_variants_were_timed_against_the_fp32_export(example_builds):
    _, results = example_builds
    for name, sizes in (("digits", [1, 8, 64]), ("minilm", [1, 8, 32])):
        by_name = {v.name: v for v in results[name].variants}
        for variant in ("fp32", "int8-static" if name == "digits" else "int8-dynamic-per-channel"):
            performance = by_name[variant].performance
            assert performance.objective.value == "latency" and performance.accepted
            assert [c.batch_size for c in performance.comparisons] == sizes
        assert by_name["fp16"].performance.objective.value == "size"
    # per-channel dynamic INT8 on the transformer is faster than FP32 (measured 0.37-0.44x)
    per_channel = next(v for v in results["minilm"].variants if v.name == "int8-dynamic-per-channel")
    assert all(c.ratio < 1.0 for c in per_channel.performance.comparisons)


def test_minilm_openvino_int8_is_accepted_faster_and_written_as_its_own_model(example_builds):
    repository, results = example_builds
    variant = next(v for v in results["minilm"].variants if v.name == "openvino-int8")
    assert variant.status == ACCEPTED, variant.reason
    assert variant.decision.checks[0].value >= 0.99  # cosine to the PyTorch baseline
    assert all(c.ratio < 1.0 for c in variant.performance.comparisons)  # faster than the FP32 export
    model = read_model(repository, "minilm_openvino")
    assert model.config.backend == "openvino"
    assert [v.lineage["variant"] for v in model.versions] == ["openvino-int8"]
