"""One `tritium tune` run: find the model on the server, search, put everything back, say what it is valid for.

:func:`run_tune` resolves the model, version and files, picks the target (a temporary model by
default, the live one with ``in_place``), runs the search of :mod:`tritium.serving.tuning.search` with
an ``evaluate`` that loads each candidate, checks its answers and sweeps its concurrency, and always
unloads the temporary model or restores the live model's original config, whatever happened (Ctrl-C
included). Progress goes to an :class:`Observer`.
"""

from __future__ import annotations

import os
import platform
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from tritonclient.grpc import model_config_pb2 as mc

from tritium.errors import ModelNotReadyError, NotFoundError, RepositoryError, UserInputError
from tritium.serving import registry
from tritium.serving.control import TritonControl
from tritium.serving.runtime_repo import CONFIG_FILE, TEMPLATE, engine_for, read_config, version_dirs
from tritium.serving.tuning import measure
from tritium.serving.tuning.loadgen import find_h2load
from tritium.serving.tuning.search import (
    Budget,
    Constraints,
    Evaluation,
    Mode,
    Objective,
    Point,
    SearchResult,
    Status,
    concurrency_levels,
    search,
    sweep,
)
from tritium.serving.tuning.space import (
    DERIVED_THREADS_KEY,
    NATIVE_THREADS_KEY,
    Candidate,
    Kind,
    SearchSpace,
    candidate_from_config,
    default_space,
    parse_space,
)

_MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_LOOPBACK = ("127.0.0.1", "localhost", "0.0.0.0", "[::1]", "::1")
_CPU_FLAGS = ("avx2", "f16c", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile")


@dataclass(frozen=True)
class TuneSettings:
    """What to tune and how, validated before anything touches the server."""

    model: str
    url: str
    repository: Path
    version: int | None = None
    objective: Objective = Objective.throughput
    constraints: Constraints = field(default_factory=Constraints)
    mode: Mode = Mode.quick
    budget: Budget = field(default_factory=lambda: Budget(600.0))
    space: tuple[str, ...] = ()
    seconds: float = 3.0  # per concurrency level
    max_concurrency: int = 64
    in_place: bool = False
    margin: float = 0.03  # what another config must gain over the current one to replace it

    def __post_init__(self) -> None:
        if not _MODEL_NAME.fullmatch(self.model) or self.model.endswith(measure.TUNE_SUFFIX):
            raise UserInputError(f"{self.model[:80]!r} is not a model name this command tunes")
        if self.version is not None and self.version < 1:
            raise UserInputError(f"--version {self.version}: versions start at 1")
        if not 1 <= self.seconds <= 600:
            raise UserInputError("--seconds must be between 1 and 600 (h2load measures whole seconds)")
        if not 1 <= self.max_concurrency <= 1024:
            raise UserInputError("--max-concurrency must be between 1 and 1024")
        if not 0 <= self.margin < 1:
            raise UserInputError("--margin must be at least 0 and below 1")
        if self.objective is Objective.latency and self.constraints.min_throughput is None:
            raise UserInputError(
                "--objective latency needs --min-throughput: the lowest p99 at what request rate?"
            )


@dataclass(frozen=True)
class Validity:
    """What the result was measured on, and what it does not transfer to."""

    server: str
    backend: str
    local: bool
    machine: dict
    notes: tuple[str, ...]

    def as_dict(self) -> dict:
        return {
            "server": self.server,
            "backend": self.backend,
            "local": self.local,
            "machine": self.machine,
            "notes": list(self.notes),
        }


@dataclass
class TuneResult:
    id: str
    settings: TuneSettings
    version: int
    target: str
    live_config: mc.ModelConfig
    start: Candidate
    space: SearchSpace
    search: SearchResult
    validity: Validity
    started_at: str
    seconds: float
    repository: Path
    warnings: list[str] = field(default_factory=list)

    @property
    def chosen(self) -> Evaluation | None:
        return self.search.chosen


class Observer:
    """Progress callbacks (the CLI draws them; tests may raise from one to inject a failure)."""

    def candidate_started(self, index: int, candidate: Candidate) -> None:
        pass

    def level_measured(self, index: int, point: Point) -> None:
        pass

    def candidate_done(self, index: int, evaluation: Evaluation) -> None:
        pass


@dataclass(frozen=True)
class _Model:
    version: int
    live_config: mc.ModelConfig
    derived: bool  # the local runtime's generated Python-backend model
    files: dict[str, bytes]
    model_file: Path
    repository: Path


def run_tune(settings: TuneSettings, observer: Observer | None = None) -> TuneResult:
    observer = observer or Observer()
    find_h2load()  # before anything changes on the server
    import onnxruntime as ort  # the serve extra; a missing one is reported by the CLI in one line

    started_at = datetime.now(timezone.utc)
    clock_start = time.monotonic()
    with TritonControl(settings.url) as control:
        metadata = control.server_metadata()
        model = _resolve(control, settings)
        threads_key = DERIVED_THREADS_KEY if model.derived else NATIVE_THREADS_KEY
        start = candidate_from_config(model.live_config, threads_key)
        space = _space(settings, model, start)
        session = ort.InferenceSession(
            str(model.model_file), _reference_options(ort), ["CPUExecutionProvider"]
        )
        if settings.in_place:
            target = measure.LiveModel(control, settings.model, model.version, model.live_config)
            where = f"the live model '{settings.model}' (in place; restored at the end)"
        else:
            target = measure.TemporaryModel(control, settings.model, model.version, model.files)
            where = f"a temporary model '{target.name}' (live traffic untouched)"
        evaluate = _Evaluator(control, settings, model, target, threads_key, session, observer)
        warnings: list[str] = []
        try:
            result = search(
                settings.mode,
                space,
                start,
                evaluate,
                objective=settings.objective,
                constraints=settings.constraints,
                budget=settings.budget,
                margin=settings.margin,
            )
        finally:
            try:
                target.close()
            except RepositoryError:
                raise
            except Exception as exc:  # the temporary model: leaving it loaded is untidy, not harmful
                if settings.in_place:
                    raise
                warnings.append(f"could not unload {target.name}: {exc}")
    validity = _validity(settings, metadata, model, ort.__version__)
    return TuneResult(
        id=started_at.strftime("%Y%m%dT%H%M%SZ"),
        settings=settings,
        version=model.version,
        target=where,
        live_config=model.live_config,
        start=start,
        space=space,
        search=result,
        validity=validity,
        started_at=started_at.isoformat(timespec="seconds"),
        seconds=time.monotonic() - clock_start,
        repository=model.repository,
        warnings=warnings,
    )


def _reference_options(ort):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # the reference must not take the server's cores
    return options


class _Evaluator:
    """``evaluate(candidate)`` for the search: load, check the answers, sweep the concurrency."""

    def __init__(
        self, control, settings: TuneSettings, model: _Model, target, threads_key, session, observer
    ):
        self.control, self.settings, self.model, self.target = control, settings, model, target
        self.threads_key, self.session, self.observer = threads_key, session, observer
        self.count = 0
        self.levels = concurrency_levels(settings.max_concurrency)

    def __call__(self, candidate: Candidate) -> Evaluation:
        from tritium.serving.tuning.space import apply_candidate

        self.count += 1
        index = self.count
        self.observer.candidate_started(index, candidate)
        began = time.monotonic()
        config = apply_candidate(self.model.live_config, candidate, self.threads_key)
        try:
            self.target.load(config)
        except (RepositoryError, UserInputError) as exc:  # Triton refused this config: skip it
            evaluation = Evaluation(candidate, Status.skipped, reason=exc.message)
        else:
            evaluation = self._measure(candidate, index, config)
        evaluation = Evaluation(
            evaluation.candidate,
            evaluation.status,
            evaluation.points,
            evaluation.reason,
            seconds=time.monotonic() - began,
        )
        self.observer.candidate_done(index, evaluation)
        return evaluation

    def _measure(self, candidate: Candidate, index: int, config: mc.ModelConfig) -> Evaluation:
        name, version = self.target.name, self.model.version
        wrong = measure.check_answers(self.control.url, name, version, config, self.session)
        if wrong is not None:
            return Evaluation(candidate, Status.rejected, reason=wrong)
        message = measure.infer_message(name, version, config)

        def level(concurrency: int) -> Point:
            point = measure.measure_level(
                self.control, name, version, message, concurrency, self.settings.seconds
            )
            self.observer.level_measured(index, point)
            return point

        points, why = sweep(level, self.levels, self.settings.objective, self.settings.constraints)
        return Evaluation(candidate, Status.measured, tuple(points), reason=why)


def _resolve(control: TritonControl, settings: TuneSettings) -> _Model:
    """The live model's loaded config, the version to tune and its files, or a one-line error."""
    index = control.index()
    states = [m for m in index if m.name == settings.model]
    if not states:
        known = ", ".join(sorted({m.name for m in index if not m.name.endswith(measure.TUNE_SUFFIX)}))
        raise NotFoundError(
            f"no model '{settings.model}' on Triton at {settings.url}", hint=f"models: {known or 'none'}"
        )
    ready = sorted(int(m.version) for m in states if m.state == "READY" and m.version.isdigit())
    if not ready:
        raise ModelNotReadyError(
            f"model '{settings.model}' is not loaded on Triton at {settings.url}",
            hint=f"load it first: `tritium models load {settings.model} --url {settings.url}`",
        )
    live_config = control.model_config(settings.model)
    record = registry.lookup(settings.url)
    repository = Path(record.repository) if record is not None else settings.repository
    model_dir = repository / settings.model
    if not (model_dir / CONFIG_FILE).is_file():
        raise NotFoundError(
            f"no model '{settings.model}' in the repository {repository}: tune needs the version's file",
            hint="pass --repository (the canonical repository the server was built from)",
        )
    canonical = read_config(model_dir / CONFIG_FILE)
    engine = engine_for(canonical)
    artifact = canonical.default_model_filename or (engine.default_artifact if engine else "model.onnx")
    available = version_dirs(model_dir, artifact)
    version = settings.version if settings.version is not None else ready[-1]
    if version not in available:
        raise NotFoundError(
            f"model '{settings.model}' has no version {version} in {repository}",
            hint=f"versions: {', '.join(map(str, sorted(available))) or 'none'}",
        )
    if settings.in_place and version not in ready:
        raise NotFoundError(
            f"version {version} of '{settings.model}' is not served (serving: {', '.join(map(str, ready))})",
            hint="--in-place measures a version the live model serves; drop --in-place to tune any version",
        )
    if not artifact.endswith(".onnx"):
        raise UserInputError(
            f"version {version} of '{settings.model}' is {artifact}: tune checks every answer against "
            "onnxruntime, so it tunes ONNX versions",
            hint="tune an ONNX version of the model (--version)",
        )
    derived = live_config.backend == "python" and "tritium_engine" in live_config.parameters
    version_dir = available[version]
    files = {
        f"{version}/{path.name}": path.read_bytes()
        for path in sorted(version_dir.iterdir())
        if path.is_file() and path.suffix != ".json"  # lineage and tuning records are not the model
    }
    if derived:
        files[f"{version}/model.py"] = TEMPLATE.read_bytes()
    return _Model(version, live_config, derived, files, version_dir / artifact, repository)


def _space(settings: TuneSettings, model: _Model, start: Candidate) -> SearchSpace:
    if settings.space:
        return parse_space(settings.space, start)
    gpu = any(g.kind == mc.ModelInstanceGroup.KIND_GPU for g in model.live_config.instance_group)
    local = _is_local(settings.url)
    return default_space(
        start,
        cores=len(os.sched_getaffinity(0)) if local else None,
        gpu=gpu or start.kind is Kind.gpu,
        instance_groups=len(model.live_config.instance_group),
    )


def _is_local(url: str) -> bool:
    host = url.split("://", 1)[-1].rsplit(":", 1)[0]
    return host in _LOOPBACK


def machine() -> dict:
    """This machine, as far as a result depends on it: CPU model, cores, the SIMD sets, load."""
    model, flags = "unknown", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model == "unknown":
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    return {
        "cpu": model,
        "cores": len(os.sched_getaffinity(0)),
        "instruction_sets": [flag for flag in _CPU_FLAGS if flag in flags],
        "load_average_1m": round(os.getloadavg()[0], 2),
        "platform": platform.platform(terse=True),
    }


def _validity(settings: TuneSettings, metadata: dict, model: _Model, ort_version: str) -> Validity:
    local = _is_local(settings.url)
    server = f"Triton {metadata.get('version', '?')} at {settings.url}"
    notes = []
    if model.derived:
        backend = f"Python backend running onnxruntime {ort_version} (Tritium's local runtime)"
        notes.append(
            "measured on the local Python-backend Triton: the numbers and the best config do not transfer "
            "to the official image's native onnxruntime backend (no Python stub, no per-request IPC) — "
            "tune again against that server"
        )
    else:
        backend = model.live_config.backend or model.live_config.platform or "?"
    if local:
        notes.append("the load generator ran on the server's machine and shared its CPUs")
    else:
        notes.append(
            "remote server: its hardware is not known here; the network between this machine and the "
            "server is part of every latency"
        )
    notes.append("load: one item per request (batch 1), gRPC")
    return Validity(server, backend, local, machine(), tuple(notes))
