"""The settings `tritium tune` searches: reading them from a loaded config, writing candidates and changes."""

from __future__ import annotations

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from tritium.errors import UserInputError
from tritium.serving.tuning.space import (
    DERIVED_THREADS_KEY,
    NATIVE_THREADS_KEY,
    Candidate,
    Kind,
    apply_candidate,
    apply_changes,
    candidate_from_config,
    changes,
    default_space,
    parse_space,
)

# What Triton answers to get_model_config for a local runtime model (preferred size filled in by Triton).
LOADED = """
name: "digits"
version_policy { specific { versions: 1 versions: 2 versions: 3 } }
max_batch_size: 64
input { name: "pixels" data_type: TYPE_FP32 dims: 1 dims: 8 dims: 8 }
output { name: "logits" data_type: TYPE_FP32 dims: 10 }
instance_group { name: "digits_0" count: 1 kind: KIND_CPU }
default_model_filename: "model.py"
dynamic_batching { preferred_batch_size: 64 max_queue_delay_microseconds: 500 preserve_ordering: true }
parameters { key: "tritium_intra_op_threads" value { string_value: "2" } }
parameters { key: "tritium_engine" value { string_value: "onnxruntime" } }
backend: "python"
"""

# The canonical config the builder wrote (native backend, GPU instances for the official image).
CANONICAL = """
name: "digits"
platform: "onnxruntime_onnx"
version_policy { specific { versions: 1 versions: 2 versions: 3 } }
max_batch_size: 64
input { name: "pixels" data_type: TYPE_FP32 dims: 1 dims: 8 dims: 8 }
output { name: "logits" data_type: TYPE_FP32 dims: 10 }
instance_group { count: 1 kind: KIND_GPU gpus: 0 }
dynamic_batching { max_queue_delay_microseconds: 500 }
model_warmup { name: "zeros" batch_size: 1 }
"""


def parse(text: str) -> mc.ModelConfig:
    return text_format.Parse(text, mc.ModelConfig())


START = candidate_from_config(parse(LOADED), DERIVED_THREADS_KEY)


def test_a_loaded_config_is_read_as_the_point_it_sits_at():
    assert Candidate(64, True, 500, "max", 1, Kind.cpu, 2) == START
    unbatched = parse(LOADED)
    unbatched.ClearField("dynamic_batching")
    assert candidate_from_config(unbatched, DERIVED_THREADS_KEY).effective() == Candidate(
        64, False, 0, "max", 1, Kind.cpu, 2
    )
    native = parse(CANONICAL)
    assert candidate_from_config(native, NATIVE_THREADS_KEY) == Candidate(
        64, True, 500, "max", 1, Kind.gpu, 0
    )


def test_a_candidate_changes_only_the_searched_settings_of_the_loaded_config():
    candidate = Candidate(32, True, 2000, "half", 2, Kind.cpu, 1)
    out = apply_candidate(parse(LOADED), candidate, DERIVED_THREADS_KEY)
    assert out.max_batch_size == 32
    assert out.dynamic_batching.max_queue_delay_microseconds == 2000
    assert list(out.dynamic_batching.preferred_batch_size) == [16]
    assert out.dynamic_batching.preserve_ordering  # other batcher fields are kept
    assert out.instance_group[0].count == 2 and out.instance_group[0].name == "digits_0"
    assert out.parameters[DERIVED_THREADS_KEY].string_value == "1"
    assert list(out.version_policy.specific.versions) == [1, 2, 3]  # all versions stay served
    assert out.parameters["tritium_engine"].string_value == "onnxruntime" and out.backend == "python"
    assert candidate_from_config(out, DERIVED_THREADS_KEY) == candidate

    off = apply_candidate(
        parse(LOADED), Candidate(64, False, 2000, "half", 1, Kind.cpu, 0), DERIVED_THREADS_KEY
    )
    assert not off.HasField("dynamic_batching") and DERIVED_THREADS_KEY not in off.parameters


def test_apply_writes_only_what_changed_into_the_canonical_config():
    canonical = parse(CANONICAL)
    chosen = Candidate(64, True, 2000, "max", 1, Kind.gpu, 0)
    start = Candidate(64, True, 500, "max", 1, Kind.gpu, 0)
    out = apply_changes(canonical, start, chosen)
    assert out.dynamic_batching.max_queue_delay_microseconds == 2000
    assert list(out.dynamic_batching.preferred_batch_size) == []  # "max" is Triton's default: left unset
    assert out.instance_group[0].kind == mc.ModelInstanceGroup.KIND_GPU and list(
        out.instance_group[0].gpus
    ) == [0]
    assert out.version_policy == canonical.version_policy and out.model_warmup == canonical.model_warmup
    assert NATIVE_THREADS_KEY not in out.parameters
    assert [str(c) for c in changes(start, chosen)] == ["max_queue_delay_us: 500 → 2000"]
    assert apply_changes(canonical, start, start) == canonical


def test_apply_pins_the_threads_measured_when_the_instance_count_changes():
    # the local runtime measured 2 instances × 2 threads; left unset it would derive cores / 2 = 1
    start = Candidate(64, True, 500, "max", 1, Kind.cpu, 2)
    chosen = Candidate(64, True, 500, "max", 2, Kind.cpu, 2)
    canonical = parse(CANONICAL.replace("KIND_GPU gpus: 0", "KIND_CPU"))
    out = apply_changes(canonical, start, chosen)
    assert out.instance_group[0].count == 2
    assert out.parameters[NATIVE_THREADS_KEY].string_value == "2"


def test_the_default_space_is_around_the_current_config_and_sized_to_the_machine():
    space = default_space(START, cores=2, gpu=False)
    assert space.max_batch_size == (32, 64, 128)
    assert space.instances == (1, 2) and space.kind == (Kind.cpu,) and space.threads == (1, 2)
    assert 500 in space.max_queue_delay_us and space.dynamic_batching == (True, False)
    assert default_space(START, cores=2, gpu=True).kind == (Kind.cpu, Kind.gpu)
    fixed = Candidate(0, False, 0, "max", 1, Kind.cpu, 2)  # a model without a batch dimension
    unbatched = default_space(fixed, cores=2, gpu=False)
    assert unbatched.max_batch_size == (0,) and unbatched.dynamic_batching == (False,)
    assert len(unbatched.grid()) == len(unbatched.instances) * len(unbatched.threads)


def test_space_names_only_what_is_searched():
    space = parse_space(["instances=2,1", "queue_delay_us=500,4000"], START)
    assert space.instances == (1, 2) and space.max_queue_delay_us == (500, 4000)
    assert space.max_batch_size == (64,) and space.threads == (2,)  # the rest stays put
    assert len(space.grid()) == 4
    assert parse_space(["dynamic_batching=on,off", "preferred=max,4+8", "kind=cpu"], START).preferred == (
        "max",
        "4+8",
    )


@pytest.mark.parametrize(
    ("item", "words"),
    [
        ("instancez=1", "expected NAME=V1,V2"),
        ("instances", "expected NAME=V1,V2"),
        ("instances=", "give 1 to 32 values"),
        ("instances=0", "at least 1"),
        ("instances=1,x", "'x' is not a valid value"),
        ("threads=-1", "not a valid value"),
        ("kind=tpu", "not a valid value"),
        ("preferred=most", "not a valid value"),
        ("max_batch_size=0", "would change the model's input shapes"),
        ("queue_delay_us=99999999999", "not a valid value"),
    ],
)
def test_a_bad_space_is_one_line_naming_the_mistake(item, words):
    with pytest.raises(UserInputError) as caught:
        parse_space([item], START)
    assert words in caught.value.one_line() and "\n" not in caught.value.one_line()


def test_a_model_without_batching_refuses_batching_settings():
    fixed = Candidate(0, False, 0, "max", 1, Kind.cpu, 2)
    with pytest.raises(UserInputError, match="served without batching"):
        parse_space(["dynamic_batching=on"], fixed)
    assert parse_space(["instances=1,2"], fixed).instances == (1, 2)
