"""`tritium engines MODEL`: a ready-to-run ``trtexec`` job that builds a TensorRT engine where it runs.

TensorRT engines are tied to the GPU and the TensorRT version that built them, and TensorRT
cannot be installed here, so Tritium ships no engine: it writes the job that builds one on the
target GPU node, in the TensorRT container of the same NGC release as the Triton image (their
TensorRT versions match), as a Compose service and as a Kubernetes Job. The job reads the ONNX
version from the model repository, runs ``trtexec`` with one optimization profile (min/opt/max
shapes from the recipe's inputs: batch 1 / the tuned or largest profiled batch / ``max_batch_size``; other
dynamic axes from ``export.verify_dims`` and ``profile.fixed_dims``), and writes
``<name>_tensorrt/1/model.plan`` beside a ``tensorrt_plan`` config, a Triton model of its own.

Pure until :func:`write_engine_job`: the plan (:func:`engine_plan`), the config and the documents
are values the tests check against Triton's protobuf schema, the Compose schema and Kubernetes'.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml
from tritonclient.grpc import model_config_pb2 as mc

from tritium.builder.profiling import profile_batch_sizes
from tritium.builder.recipe import LoadedRecipe, Recipe
from tritium.builder.triton_config import to_pbtxt
from tritium.errors import NotFoundError, RecipeError

TENSORRT_PLATFORM = "tensorrt_plan"
REPOSITORY_MOUNT = "/models"
JOB_MOUNT = "/job"


@dataclass(frozen=True)
class ShapeProfile:
    """One input's optimization profile: full shapes, batch axis included."""

    name: str
    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]

    def flag(self, which: str) -> str:
        return f"{self.name}:{'x'.join(map(str, getattr(self, which)))}"


@dataclass(frozen=True)
class EnginePlan:
    model: str  # the ONNX model in the repository
    version: int  # its version the engine is built from
    target: str  # <model>_tensorrt
    precision: str  # FP32 | FP16 | INT8 (trtexec --fp16 / --int8)
    profiles: tuple[ShapeProfile, ...]
    image: str  # the TensorRT container
    workspace_mib: int

    @property
    def onnx_path(self) -> str:
        return f"{REPOSITORY_MOUNT}/{self.model}/{self.version}/model.onnx"

    @property
    def plan_path(self) -> str:
        return f"{REPOSITORY_MOUNT}/{self.target}/1/model.plan"

    def trtexec_args(self) -> list[str]:
        args = [
            "trtexec",
            f"--onnx={self.onnx_path}",
            f"--saveEngine={self.plan_path}",
            f"--memPoolSize=workspace:{self.workspace_mib}M",
        ]
        if any(p.min != p.max for p in self.profiles):
            for which, flag in (("min", "--minShapes"), ("opt", "--optShapes"), ("max", "--maxShapes")):
                args.append(f"{flag}={','.join(p.flag(which) for p in self.profiles)}")
        if self.precision == "FP16":
            args.append("--fp16")
        elif self.precision == "INT8":
            args += ["--int8", "--fp16"]  # layers INT8 cannot take fall back to FP16, not FP32
        return args

    def script(self) -> str:
        """The shell the job runs: build the engine, then put the config beside it (only on success)."""
        trtexec = " ".join(self.trtexec_args())
        return (
            f"set -eu; mkdir -p {REPOSITORY_MOUNT}/{self.target}/1; {trtexec}; "
            f"cp {JOB_MOUNT}/config.pbtxt {REPOSITORY_MOUNT}/{self.target}/config.pbtxt"
        )


def tensorrt_image(triton_image: str) -> str:
    """The TensorRT container of the Triton image's NGC release (``…tritonserver:25.10-py3`` → ``…tensorrt:25.10-py3``)."""
    tag = triton_image.rpartition(":")[2]
    release = tag.split("-")[0]
    if not release.replace(".", "").isdigit():
        raise RecipeError(
            f"cannot tell the NGC release of the Triton image {triton_image!r}",
            hint="pass --image nvcr.io/nvidia/tensorrt:YY.MM-py3 for the release your Triton runs",
        )
    return f"nvcr.io/nvidia/tensorrt:{release}-py3"


def _axis_sizes(recipe: Recipe, axis: str, input_name: str) -> tuple[int, int, int]:
    verified = recipe.export.verify_dims.get(axis, [])
    fixed = recipe.profile.fixed_dims.get(axis)
    sizes = sorted({*verified, *([fixed] if fixed else [])})
    if not sizes:
        raise RecipeError(
            f"input {input_name!r} has the dynamic axis {axis!r} but the recipe gives no sizes for it",
            hint=f"add export.verify_dims.{axis}: [smallest, largest] (and profile.fixed_dims.{axis}: typical)",
        )
    return sizes[0], fixed or sizes[-1], sizes[-1]


def shape_profiles(
    recipe: Recipe, tuned: Sequence[int] = (), max_batch_size: int | None = None
) -> tuple[ShapeProfile, ...]:
    """min/opt/max shapes for every input: batch 1 / the batch the engine is tuned for / max_batch_size.

    The opt batch is the largest of ``tuned`` (the config's ``preferred_batch_size``, where serving
    was tuned), else the largest batch the build profiled; the max is ``max_batch_size`` (the served
    config's, which `tritium tune` may have changed), else the recipe's.
    """
    batch_axis = recipe.batch_axis
    if batch_axis:
        batches = profile_batch_sizes(recipe)
        largest = max_batch_size or max(recipe.triton.max_batch_size, max(batches))
        opt = min(max(tuned), largest) if tuned else max(batches)
        batch = (1, opt, largest)
    profiles = []
    for spec in recipe.inputs:
        low, opt, high = [], [], []
        for index, dim in enumerate(spec.shape):
            if isinstance(dim, int):
                sizes = (dim, dim, dim)
            elif index == 0 and batch_axis:
                sizes = batch
            else:
                sizes = _axis_sizes(recipe, dim, spec.name)
            low.append(sizes[0])
            opt.append(sizes[1])
            high.append(sizes[2])
        profiles.append(ShapeProfile(spec.name, tuple(low), tuple(opt), tuple(high)))
    return tuple(profiles)


def engine_plan(
    loaded: LoadedRecipe,
    version: int,
    *,
    triton_image: str,
    precision: str | None = None,
    workspace_mib: int = 1024,
    tuned: Sequence[int] = (),
    max_batch_size: int | None = None,
) -> EnginePlan:
    recipe = loaded.recipe
    precision = precision or recipe.triton.tensorrt_precision
    if precision not in ("FP32", "FP16", "INT8"):
        raise RecipeError(f"unknown TensorRT precision {precision!r}", hint="use FP32, FP16 or INT8")
    return EnginePlan(
        model=recipe.name,
        version=version,
        target=f"{recipe.name}_tensorrt",
        precision=precision,
        profiles=shape_profiles(recipe, tuned, max_batch_size),
        image=tensorrt_image(triton_image),
        workspace_mib=workspace_mib,
    )


def tensorrt_config(plan: EnginePlan, onnx_config: mc.ModelConfig) -> mc.ModelConfig:
    """The ``tensorrt_plan`` config: the ONNX model's tensors, batching and warm-up; GPU instances; version 1."""
    config = mc.ModelConfig()
    config.CopyFrom(onnx_config)
    config.name = plan.target
    config.platform = TENSORRT_PLATFORM
    config.ClearField("backend")
    config.ClearField("default_model_filename")
    config.ClearField("optimization")  # the ONNX config's TensorRT accelerator: this is TensorRT itself
    config.version_policy.specific.versions[:] = [1]
    del config.instance_group[:]
    config.instance_group.add(count=1, kind=mc.ModelInstanceGroup.KIND_GPU)  # an engine runs on its GPU
    return config


def compose_document(plan: EnginePlan, repository: Path, job_dir: Path) -> dict:
    service = f"trtexec-{plan.model}".lower().replace("_", "-").replace(".", "-")
    return {
        "services": {
            service: {
                "image": plan.image,
                "command": ["sh", "-c", plan.script()],
                "volumes": [
                    f"{repository}:{REPOSITORY_MOUNT}",
                    f"{job_dir}:{JOB_MOUNT}:ro",
                ],
                "restart": "no",
                "deploy": {
                    "resources": {
                        "reservations": {
                            "devices": [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
                        }
                    }
                },
            }
        },
    }


def kubernetes_documents(plan: EnginePlan, config_text: str, *, namespace: str, claim: str) -> list[dict]:
    name = f"trtexec-{plan.model}".lower().replace("_", "-").replace(".", "-")
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": f"{name}-config", "namespace": namespace},
        "data": {"config.pbtxt": config_text},
    }
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/part-of": "tritium"},
        },
        "spec": {
            "backoffLimit": 1,
            "ttlSecondsAfterFinished": 86400,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": "trtexec",
                            "image": plan.image,
                            "command": ["sh", "-c", plan.script()],
                            "resources": {"limits": {"nvidia.com/gpu": 1}},
                            "volumeMounts": [
                                {"name": "models", "mountPath": REPOSITORY_MOUNT},
                                {"name": "job", "mountPath": JOB_MOUNT, "readOnly": True},
                            ],
                        }
                    ],
                    "volumes": [
                        {"name": "models", "persistentVolumeClaim": {"claimName": claim}},
                        {"name": "job", "configMap": {"name": f"{name}-config"}},
                    ],
                }
            },
        },
    }
    return [config_map, job]


@dataclass(frozen=True)
class EngineJob:
    plan: EnginePlan
    folder: Path
    compose: Path
    kubernetes: Path
    config: Path


def write_engine_job(
    loaded: LoadedRecipe,
    repository: Path,
    output: Path,
    *,
    version: int | None = None,
    triton_image: str,
    precision: str | None = None,
    namespace: str = "tritium",
    claim: str = "model-repository",
) -> EngineJob:
    from tritium.builder.repository import read_model

    repository = repository.resolve()
    model = read_model(repository, loaded.recipe.name)
    if model.config.platform != "onnxruntime_onnx":
        raise NotFoundError(
            f"model {model.name!r} is not an ONNX model ({model.config.platform or model.config.backend})",
            hint="name the recipe whose ONNX versions the engine is built from",
        )
    served = [v.version for v in model.versions if v.served]
    if version is None:
        if not served:
            raise NotFoundError(
                f"model {model.name!r} serves no version", hint="build it with `tritium build`"
            )
        version = served[-1]
    elif version not in {v.version for v in model.versions}:
        known = ", ".join(str(v.version) for v in model.versions)
        raise NotFoundError(f"model {model.name!r} has no version {version}", hint=f"versions: {known}")
    tuned = list(model.config.dynamic_batching.preferred_batch_size)
    plan = engine_plan(
        loaded,
        version,
        triton_image=triton_image,
        precision=precision,
        tuned=tuned,
        max_batch_size=model.config.max_batch_size or None,
    )
    config_text = to_pbtxt(tensorrt_config(plan, model.config))
    output.mkdir(parents=True, exist_ok=True)
    output = output.resolve()
    (output / "config.pbtxt").write_text(config_text)
    compose = output / "compose.yaml"
    compose.write_text(
        "# Builds the TensorRT engine on this host's GPU: docker compose -f compose.yaml up\n"
        + yaml.safe_dump(compose_document(plan, repository, output), sort_keys=False)
    )
    kubernetes = output / "job.yaml"
    kubernetes.write_text(
        "# Builds the TensorRT engine on a GPU node: kubectl apply -f job.yaml (the model repository's PVC)\n"
        + yaml.safe_dump_all(
            kubernetes_documents(plan, config_text, namespace=namespace, claim=claim), sort_keys=False
        )
    )
    return EngineJob(plan, output, compose, kubernetes, output / "config.pbtxt")
