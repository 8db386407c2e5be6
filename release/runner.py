"""The phases of a release against a running Triton and gateway.

Order of every step: a version is loaded and verified before any route sends it traffic; a route
is changed before what it stops using is unloaded (after the gateway's workers had time to read
it). Each phase is idempotent (routes are applied as whole documents, loads name the versions to
serve), and the record is saved after each one, so a release interrupted anywhere is resumed
(`--resume`) from the phase after the last it completed. A failure restores the route the release
started from and unloads the candidate.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from tritium.errors import ReleaseFailedError, TritiumError, UnavailableError, UserInputError
from tritium.release import plan
from tritium.release.analysis import EMPTY, Analysis, ArmWindow, GatewaysAnalysis
from tritium.release.fleet import Fleet
from tritium.release.record import Outcome, Phase, ReleaseRecord, ReleaseStore, Strategy

ROUTE_PROPAGATION_S = 2.5  # gateway workers re-read the route file every second: allow two reads and more


@dataclass(frozen=True)
class Options:
    steps: tuple[int, ...] = (10, 50, 100)
    window_s: float = 30.0
    min_requests: int = 20
    max_error_rate_increase: float = 0.01
    max_p99_ratio: float = 1.5
    p99_slack_ms: float = 5.0
    shadow_window_s: float = 30.0
    min_agreement: float = 0.99
    min_rows: int = 20
    compare: str = "top1"
    ab_percent: int = 50
    ab_window_s: float = 60.0
    grace_s: float = 60.0
    parity_rtol: float = 1e-4
    parity_atol: float = 1e-5
    timeout_s: float = 600.0


class Runner:
    """Drives one release over a fleet (one Triton and one gateway being the smallest fleet).

    With one gateway and no Prometheus, canary steps are the gateway's own controller's to judge.
    With several gateways, or with `analysis` from Prometheus, the release drives the steps itself
    and holds the route meanwhile, so no gateway's controller judges its share of the traffic alone.
    """

    def __init__(
        self,
        record: ReleaseRecord,
        store: ReleaseStore,
        fleet: Fleet,
        repository: Path,
        options: Options,
        inputs: Callable[[], dict[str, np.ndarray]] | None = None,
        say: Callable[[str], None] = print,
        analysis: Analysis | None = None,
    ) -> None:
        self.record = record
        self.store = store
        self.fleet = fleet
        self.repository = repository
        self.options = options
        self.inputs = inputs
        self.say = say
        self.gateway_windows = GatewaysAnalysis(fleet.gateways)
        self.analysis = analysis or self.gateway_windows

    @property
    def drives_steps(self) -> bool:
        return self.fleet.replicated or self.analysis is not self.gateway_windows

    # --- the whole release -----------------------------------------------------------------------
    def run(self) -> ReleaseRecord:
        steps: list[tuple[Phase, Callable[[], bool]]] = [
            (Phase.LOADED, self._load),
            (Phase.VERIFIED, self._verify),
        ]
        if self.record.strategy is Strategy.SHADOW_CANARY:
            steps.append((Phase.SHADOWED, self._shadow))
        if self.record.previous_version is None:
            steps.append((Phase.EXPOSED, self._first))  # nothing to compare with: it becomes stable
        elif self.record.strategy is Strategy.AB:
            steps.append((Phase.EXPOSED, self._ab))
        else:
            steps.append((Phase.EXPOSED, self._canary))
        steps += [(Phase.PROMOTED, self._promote), (Phase.DONE, self._settle)]
        order = list(Phase)
        try:
            for phase, step in steps:
                if order.index(self.record.phase) >= order.index(phase):
                    continue  # done before this run (resumed)
                started = time.monotonic()
                self.say(f"{phase.value}: …")
                if not step():
                    return self.record
                self.record.phase = phase
                self.record.timings_s[phase.value] = round(time.monotonic() - started, 2)
                self.store.save(self.record)
            self.record.outcome = Outcome.PROMOTED
            self.record.finished_at = time.time()
            self.store.save(self.record)
            return self.record
        except KeyboardInterrupt:
            self.store.save(self.record)
            raise
        except TritiumError as exc:
            self.record.decide("error", False, exc.one_line())
            self._restore(Outcome.FAILED, exc.one_line())
            raise ReleaseFailedError(
                f"release {self.record.id} failed and was rolled back: {exc.one_line()}",
                hint=f"see releases/{self.record.model}/{self.record.id}.md",
            ) from None

    # --- phases ----------------------------------------------------------------------------------
    def _load(self) -> bool:
        r = self.record
        how = self.fleet.add_version(r.triton_model, r.candidate_version)
        self.fleet.wait_ready(r.triton_model, r.candidate_version, self.options.timeout_s)
        served = {url: sorted(versions) for url, versions in self.fleet.served(r.triton_model).items()}
        r.decide(
            "load",
            True,
            f"version {r.candidate_version} ready on {len(served)} Triton(s) ({how[0]})",
            serving=served,
        )
        return True

    def _verify(self) -> bool:
        """Served parity on every Triton replica: one that answers differently stops the release."""
        r = self.record
        for url in self.fleet.tritons:
            result = served_parity(
                self.repository / r.triton_model / str(r.candidate_version),
                url,
                r.triton_model,
                r.candidate_version,
                self.inputs,
                self.options.parity_rtol,
                self.options.parity_atol,
            )
            where = f" on {url}" if len(self.fleet.tritons) > 1 else ""
            r.decide("parity", result.ok, result.reason + where, **result.evidence, triton=url)
            if not result.ok:
                self._restore(Outcome.STOPPED, result.reason + where)
                return False
        return True

    def _shadow(self) -> bool:
        r, o = self.record, self.options
        route = self._route()
        self._put(plan.with_shadow(route, r.triton_model, r.candidate_version, o.compare))
        started = time.time()
        verdict = plan.Verdict(False, "not judged", enough_data=False)
        while time.time() - started < o.shadow_window_s or not verdict.enough_data:
            time.sleep(1.0)
            shadow = self.gateway_windows.shadow(r.model, since=started)
            verdict = plan.judge_shadow(shadow, o.min_agreement, o.min_rows)
            if verdict.enough_data and not verdict.ok:
                break  # disagreement is enough to stop: nothing more to wait for
            if time.time() - started > o.shadow_window_s + o.timeout_s:
                raise UnavailableError(f"not enough traffic to judge the shadow: {verdict.reason}")
        r.decide("shadow", verdict.ok, verdict.reason, shadow=shadow)
        self._put(plan.restored(route, plan.stable_target(route)))  # the shadow off again
        if not verdict.ok:
            self._restore(Outcome.STOPPED, verdict.reason)
            return False
        return True

    def _canary(self) -> bool:
        if self.drives_steps:
            return self._driven_canary()
        r, o = self.record, self.options
        route = self._route()
        if route.get("canary") is None or route["canary"]["canary"] != plan.CANDIDATE:
            self._put(plan.with_candidate(route, r.triton_model, r.candidate_version))
            policy = {
                "stable": plan.STABLE, "canary": plan.CANDIDATE, "steps": list(o.steps), "window_s": o.window_s,
                "min_requests": o.min_requests, "max_error_rate_increase": o.max_error_rate_increase,
                "max_p99_ratio": o.max_p99_ratio, "p99_slack_ms": o.p99_slack_ms,
            }  # fmt: skip
            self.fleet.gateways[0].call("POST", f"/routes/{r.model}/canary", policy)
        deadline = time.time() + o.window_s * len(o.steps) * 3 + o.timeout_s
        while time.time() < deadline:  # the gateway's controller judges each step
            state = (self._route().get("canary") or {}).get("state")
            if state == "promoted":
                r.decide("canary", True, f"promoted through steps {list(o.steps)}")
                return True
            if state == "rolled_back":
                reason = self._route()["canary"].get("reason", "rolled back")
                r.decide("canary", False, reason)
                self._restore(Outcome.ROLLED_BACK, reason)
                return False
            time.sleep(0.5)
        raise UnavailableError(
            "the canary did not finish in time", hint="check the gateway's canary controller"
        )

    def _driven_canary(self) -> bool:
        """The canary steps judged by the release on the whole fleet's traffic (Prometheus, or every
        gateway's windows added up), the route held so that no gateway's controller acts meanwhile.
        A resumed release starts the steps again from the first: applying a smaller split is safe."""
        r, o = self.record, self.options
        route = self._route()
        baseline: ArmWindow | None = None
        for percent in o.steps:
            self._put(self._held(plan.split(route, r.triton_model, r.candidate_version, percent)))
            time.sleep(ROUTE_PROPAGATION_S)  # every gateway worker routes by the new split: the window starts
            started = time.time()
            verdict, arms = self._judge_window(started, o.window_s, baseline)
            stable = arms.get(plan.STABLE, EMPTY)
            if stable.requests >= o.min_requests:
                baseline = stable  # at 100 % stable has no traffic left: judge against the last window it had
            r.decide(
                "canary",
                verdict.ok,
                f"{percent} %: {verdict.reason} ({self.analysis.source})",
                step=percent,
                arms={alias: asdict(arm) for alias, arm in arms.items()},
            )
            if not verdict.ok:
                self._restore(Outcome.ROLLED_BACK, verdict.reason)
                return False
            self.store.save(r)
        return True

    def _judge_window(
        self, started: float, window_s: float, baseline: ArmWindow | None
    ) -> tuple[plan.Verdict, dict[str, ArmWindow]]:
        r, o = self.record, self.options
        deadline = started + window_s + o.timeout_s
        while True:
            time.sleep(max(0.0, min(1.0, started + window_s - time.time())) or 1.0)
            if time.time() - started < window_s:
                continue
            arms = self.analysis.arms(r.model, since=started)
            stable = arms.get(plan.STABLE, EMPTY)
            if stable.requests < o.min_requests and baseline is not None:
                stable = baseline
            verdict = plan.judge_step(
                arms.get(plan.CANDIDATE, EMPTY), stable, o.min_requests, o.max_error_rate_increase,
                o.max_p99_ratio, o.p99_slack_ms,
            )  # fmt: skip
            if verdict.enough_data:
                return verdict, arms
            if time.time() > deadline:
                raise UnavailableError(f"not enough traffic to judge the step: {verdict.reason}")

    def _held(self, route: dict) -> dict:
        """The route with this release's hold, a lease long enough for one step and its judgement."""
        lease = 3 * max(self.options.window_s, self.options.ab_window_s) + 60
        return plan.held(route, f"release {self.record.id}", time.time() + lease)

    def _ab(self) -> bool:
        if self.fleet.replicated:
            return self._fleet_ab()
        r, o = self.record, self.options
        route = self._route()
        self._put(plan.split(route, r.triton_model, r.candidate_version, o.ab_percent))
        started = time.time()
        time.sleep(o.ab_window_s)
        comparison = self._compare(since=started)
        verdict = plan.judge_ab(
            comparison, o.min_requests, o.max_error_rate_increase, o.max_p99_ratio, o.p99_slack_ms
        )
        r.decide(
            "ab", verdict.ok, verdict.reason, arms=comparison["arms"], differences=comparison["differences"]
        )
        if not verdict.ok:
            self._restore(Outcome.ROLLED_BACK if verdict.enough_data else Outcome.FAILED, verdict.reason)
            return False
        return True

    def _fleet_ab(self) -> bool:
        """A/B over several gateways: the split held for the window, judged on the summed arms with
        the step thresholds (the significance tests need one gateway's raw windows: `tritium routes
        compare` on each shows them)."""
        r, o = self.record, self.options
        route = self._route()
        self._put(self._held(plan.split(route, r.triton_model, r.candidate_version, o.ab_percent)))
        verdict, arms = self._judge_window(time.time(), o.ab_window_s, None)
        r.decide(
            "ab", verdict.ok, f"{verdict.reason} ({self.analysis.source})",
            arms={alias: asdict(arm) for alias, arm in arms.items()},
        )  # fmt: skip
        if not verdict.ok:
            self._restore(Outcome.ROLLED_BACK, verdict.reason)
            return False
        return True

    def _first(self) -> bool:
        r = self.record
        self._put(plan.first_route(r.triton_model, r.candidate_version))
        r.decide("first", True, f"{r.model} had no route: version {r.candidate_version} serves it")
        return True

    def _promote(self) -> bool:
        r = self.record
        route = self._route()
        previous = None
        if r.previous_version is not None:
            previous = {"model": r.triton_model, "version": str(r.previous_version)}
        self._put(plan.promoted(route, r.triton_model, r.candidate_version, previous))
        r.decide(
            "promote",
            True,
            f"stable is version {r.candidate_version}; version {r.previous_version} kept for {self.options.grace_s:g} s",
        )
        return True

    def _settle(self) -> bool:
        r = self.record
        promoted_at = next((d.at for d in reversed(r.decisions) if d.phase == "promote"), time.time())
        time.sleep(max(0.0, promoted_at + self.options.grace_s - time.time()))
        self._put(plan.settled(self._route()))
        if r.previous_version is not None and r.previous_version != r.candidate_version:
            time.sleep(ROUTE_PROPAGATION_S)  # every gateway worker reads the route before the unload
            self.fleet.drop_version(r.triton_model, r.previous_version)
        r.decide("settle", True, f"version {r.previous_version} unloaded after the grace period")
        return True

    # --- helpers ---------------------------------------------------------------------------------
    def _restore(self, outcome: Outcome, reason: str) -> None:
        """Back to the route the release started from (held off), then the candidate unloaded."""
        r = self.record
        try:
            route = self._route()
            if r.previous_version is not None:
                previous = {"model": r.triton_model, "version": str(r.previous_version)}
                self._put(
                    plan.restored(route or plan.first_route(r.triton_model, r.previous_version), previous)
                )
            elif route is not None:
                self.fleet.put(r.model, None)
            time.sleep(ROUTE_PROPAGATION_S)
            self.fleet.drop_version(r.triton_model, r.candidate_version)
        except TritiumError as exc:
            r.decide("restore", False, f"could not restore everything: {exc.one_line()}")
        r.outcome = outcome
        r.finished_at = time.time()
        r.decide("restore", True, f"{outcome.value}: {reason}")
        self.store.save(self.record)

    def _route(self) -> dict | None:
        return self.fleet.route(self.record.model)

    def _put(self, route: dict) -> None:
        self.fleet.put(self.record.model, route)

    def _compare(self, since: float) -> dict:
        """One gateway's A/B statistics (significance included) for the window since `since`."""
        minutes = min(60.0, max(1 / 60, (time.time() - since) / 60 + 1 / 60))
        return self.fleet.gateways[0].call(
            "GET", f"/routes/{self.record.model}/compare?minutes={minutes:.4f}"
        )


@dataclass(frozen=True)
class Parity:
    ok: bool
    reason: str
    evidence: dict


def served_parity(
    version_dir: Path,
    triton_url: str,
    model: str,
    version: int,
    inputs: Callable[[], dict[str, np.ndarray]] | None,
    rtol: float,
    atol: float,
) -> Parity:
    """The served version answers like the validated artifact run in-process (onnxruntime)."""
    import onnxruntime as ort
    import tritonclient.grpc as grpcclient

    artifact = version_dir / "model.onnx"
    if not artifact.is_file():
        return Parity(True, f"no model.onnx in {version_dir}: served parity not checked", {"checked": False})
    session = ort.InferenceSession(str(artifact), providers=["CPUExecutionProvider"])
    feed = inputs() if inputs is not None else _inputs_from(session)
    expected = dict(zip([o.name for o in session.get_outputs()], session.run(None, feed), strict=True))
    with grpcclient.InferenceServerClient(triton_url) as client:
        tensors = []
        for name, array in feed.items():
            tensor = grpcclient.InferInput(name, list(array.shape), _triton_dtype(array.dtype))
            tensor.set_data_from_numpy(array)
            tensors.append(tensor)
        try:
            result = client.infer(model, tensors, model_version=str(version))
        except Exception as exc:  # tritonclient's errors: the served version does not answer
            return Parity(False, f"version {version} did not answer: {str(exc)[:300]}", {})
    worst = {}
    for name, value in expected.items():
        served = result.as_numpy(name)
        if served is None or served.shape != value.shape:
            return Parity(False, f"output {name!r} is missing or has another shape", {})
        worst[name] = (
            float(np.max(np.abs(served.astype(np.float64) - value.astype(np.float64)))) if value.size else 0.0
        )
        if not np.allclose(served, value, rtol=rtol, atol=atol):
            return Parity(
                False,
                f"output {name!r} differs from the artifact by up to {worst[name]:.3g}",
                {"max_abs": worst},
            )
    return Parity(
        True,
        f"served answers equal the artifact's (max abs difference {max(worst.values(), default=0):.3g})",
        {"max_abs": worst},
    )


def _inputs_from(session) -> dict[str, np.ndarray]:  # type: ignore[no-untyped-def]
    """Inputs for a model without a recipe at hand: floats only (integer inputs need their ranges)."""
    rng = np.random.default_rng(0)
    feed = {}
    for spec in session.get_inputs():
        if "float" not in spec.type:
            raise UserInputError(
                f"input {spec.name!r} is {spec.type}: parity inputs need the recipe's value ranges",
                hint="pass the recipe (tritium release RECIPE ...)",
            )
        shape = [d if isinstance(d, int) and d > 0 else 2 for d in spec.shape]
        dtype = np.float16 if "float16" in spec.type else np.float32
        feed[spec.name] = rng.standard_normal(shape).astype(dtype)
    return feed


def _triton_dtype(dtype: np.dtype) -> str:
    from tritonclient.utils import np_to_triton_dtype

    return np_to_triton_dtype(dtype)
