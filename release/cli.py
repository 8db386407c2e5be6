"""`tritium release`, `tritium releases list|show`, `tritium rollback`."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tritium.errors import NotFoundError, NotPromotedError, UserInputError

console = Console()
releases_app = typer.Typer(help="Release records: what each release did and decided.", no_args_is_help=True)

GatewaysOption = Annotated[
    list[str] | None,
    typer.Option(
        "--gateway",
        help="Gateway (admin) base URL; repeat it for every gateway replica, or dns+http://SERVICE:PORT for "
        "every pod of a headless Service [default: http://127.0.0.1:8080, "
        "or the release's own on --resume].",
    ),
]
TritonsOption = Annotated[
    list[str] | None,
    typer.Option(
        "--triton",
        help="Triton gRPC host:port (model control); repeat it for every replica of one shared "
        "repository, or dns+SERVICE:PORT for every pod of a headless Service [default: 127.0.0.1:8001, or the release's own on --resume].",
    ),
]
TokenOption = Annotated[
    str | None, typer.Option("--token", envvar="TRITIUM_GATEWAY_ADMIN_TOKEN", help="Gateway admin token.")
]
ReleasesOption = Annotated[Path, typer.Option("--releases", help="Where release records are kept.")]
RepositoryOption = Annotated[
    Path, typer.Option("--repository", "-r", envvar="TRITIUM_REPOSITORY", help="The model repository.")
]


def register(app: typer.Typer, models_app: typer.Typer) -> None:
    app.command("release")(release)
    app.command("rollback")(rollback)
    app.add_typer(releases_app, name="releases")


def _steps(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(s) for s in text.split(","))
    except ValueError:
        raise UserInputError(f"invalid --steps {text!r}", hint="percentages like 10,50,100") from None


def release(
    recipe: Annotated[Path | None, typer.Argument(help="Recipe to build (or give --version).")] = None,
    model: Annotated[
        str | None, typer.Option("--model", help="Public (route) name; default the recipe's name.")
    ] = None,
    version: Annotated[
        int | None, typer.Option("--version", help="Release this built version (no build).")
    ] = None,
    variant: Annotated[
        str | None, typer.Option("--variant", help="Which accepted variant of the build to release.")
    ] = None,
    strategy: Annotated[str, typer.Option(help="canary | shadow-canary | ab")] = "canary",
    gateway: GatewaysOption = None,
    token: TokenOption = None,
    triton: TritonsOption = None,
    prometheus: Annotated[
        str | None,
        typer.Option(
            "--prometheus",
            help="Judge canary steps on the gateway metrics in this Prometheus, summed over replicas.",
        ),
    ] = None,
    repository: RepositoryOption = Path("model_repository"),
    releases: ReleasesOption = Path("releases"),
    steps: Annotated[str, typer.Option(help="Canary percentages.")] = "10,50,100",
    window: Annotated[float, typer.Option(help="Seconds per canary step.")] = 30.0,
    min_requests: Annotated[int, typer.Option(help="Requests needed to judge a step or an A/B arm.")] = 20,
    shadow_window: Annotated[float, typer.Option(help="Seconds of mirrored traffic (shadow-canary).")] = 30.0,
    min_agreement: Annotated[float, typer.Option(help="Shadow agreement needed (0..1).")] = 0.99,
    ab_window: Annotated[float, typer.Option(help="Seconds an A/B split is held (ab).")] = 60.0,
    grace: Annotated[
        float, typer.Option(help="Seconds the previous version stays loaded after promotion.")
    ] = 60.0,
    resume: Annotated[str | None, typer.Option("--resume", help="Continue the release with this id.")] = None,
) -> None:
    """Release a model version: load, verify served parity, (shadow,) canary or A/B, promote or roll back.

    On a fleet (several --triton on one shared repository, several --gateway), the version is
    loaded and verified on every Triton, every gateway gets the same routes, and the release judges
    the canary steps itself (on Prometheus with --prometheus) while the gateways' controllers stand down.
    """
    from contextlib import ExitStack

    from tritium.gateway.admin_client import AdminClient
    from tritium.release.analysis import PrometheusAnalysis
    from tritium.release.discovery import expand
    from tritium.release.fleet import Fleet
    from tritium.release.record import Outcome, ReleaseRecord, ReleaseStore, Strategy
    from tritium.release.runner import Options, Runner

    store = ReleaseStore(releases)
    try:
        chosen = Strategy(strategy)
    except ValueError:
        raise UserInputError(f"unknown --strategy {strategy!r}", hint="canary, shadow-canary or ab") from None
    options = Options(
        steps=_steps(steps), window_s=window, min_requests=min_requests, shadow_window_s=shadow_window,
        min_agreement=min_agreement, ab_window_s=ab_window, grace_s=grace,
    )  # fmt: skip
    record = store.load(resume) if resume is not None else None
    # As given (`dns+` names kept), so a resumed release or a rollback finds the pods there are then.
    gateway_specs = gateway or (record.gateways if record else ["http://127.0.0.1:8080"])
    triton_specs = triton or (record.tritons if record else ["127.0.0.1:8001"])
    gateways = _distinct("--gateway", expand("--gateway", gateway_specs))
    tritons = _distinct("--triton", expand("--triton", triton_specs))
    prometheus = prometheus or (record.prometheus_url if record else None)
    with ExitStack() as stack:
        admins = [stack.enter_context(AdminClient(url, token)) for url in gateways]
        admin = admins[0]
        analysis = PrometheusAnalysis(prometheus) if prometheus else None
        if analysis is not None:
            stack.callback(analysis.close)
        if record is not None:
            if record.outcome is not Outcome.IN_PROGRESS:
                console.print(f"release {record.id} already ended: {record.outcome.value}")
                return
            inputs = _parity_inputs(recipe, repository, record.triton_model, record.candidate_version)
        else:
            triton_model, candidate, metric = _candidate(recipe, version, variant, model, repository)
            public = model or triton_model
            route = _current_route(admin, public)
            previous = None
            if route is not None:
                from tritium.release.plan import stable_target

                previous = int(stable_target(route)["version"] or 0) or None
            if previous == candidate:
                raise UserInputError(
                    f"version {candidate} already serves {public!r}", hint="build a new version first"
                )
            record = ReleaseRecord(
                id=time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:6],
                model=public, triton_model=triton_model, candidate_version=candidate, previous_version=previous,
                strategy=chosen, gateway_url=gateways[0], triton_url=tritons[0], gateway_urls=gateway_specs,
                triton_urls=triton_specs, prometheus_url=prometheus, started_at=time.time(),
                settings={"options": vars(options), "metric": metric, "recipe": str(recipe) if recipe else None},
            )  # fmt: skip
            from tritium.release.plan import agreement_for

            options = Options(**{**vars(options), "compare": agreement_for(metric)})
            store.save(record)
            inputs = _parity_inputs(recipe, repository, triton_model, candidate)
        console.print(
            f"release {record.id}: {record.model} version {record.candidate_version} "
            f"(stable now: {record.previous_version}), {record.strategy.value}"
        )
        say = lambda text: console.print(escape(text))  # noqa: E731
        fleet = Fleet(tritons, admins, say=say)
        runner = Runner(record, store, fleet, repository, options, inputs, say=say, analysis=analysis)
        result = runner.run()
    report = store.path(result.model, result.id).with_suffix(".md")
    if result.outcome is not Outcome.PROMOTED:
        last = result.decisions[-1].reason if result.decisions else result.outcome.value
        raise NotPromotedError(
            f"release {result.id} ended {result.outcome.value}: {last}", hint=f"see {report}"
        )
    console.print(f"promoted: see {report}")


def _distinct(option: str, urls: list[str]) -> list[str]:
    """Each replica once: the same one named twice would be changed twice and counted twice."""
    if len(set(urls)) != len(urls):
        repeated = sorted({u for u in urls if urls.count(u) > 1})
        raise UserInputError(
            f"{option} {repeated[0]} is given twice", hint=f"name each replica once with {option}"
        )
    return urls


def _current_route(admin, model: str) -> dict | None:  # type: ignore[no-untyped-def]
    try:
        return admin.call("GET", f"/routes/{model}")["route"]
    except NotFoundError:
        return None


def _candidate(
    recipe: Path | None, version: int | None, variant: str | None, model: str | None, repository: Path
) -> tuple[str, int, str | None]:
    """(Triton model, version, the recipe's metric) of the release: given, or built now."""
    if version is not None:
        name = model if recipe is None else _recipe_name(recipe)
        if name is None:
            raise UserInputError(
                "--version needs --model (or the recipe)", hint="tritium release --model NAME --version N"
            )
        if not (repository / name / str(version)).is_dir():
            raise NotFoundError(
                f"no version {version} of {name!r} in {repository}", hint="see `tritium models list`"
            )
        return name, version, _recipe_metric(recipe)
    if recipe is None:
        raise UserInputError("give a recipe to build, or --version to release a built one")
    from tritium.builder.pipeline import build_recipe

    result = build_recipe(recipe, repository=repository)
    name = result.recipe.recipe.name
    written = [
        (v, ref)
        for v in result.accepted
        if (ref := result.version_of(v.name)) is not None
        and ref.model == name
        and (variant is None or v.name == variant)
    ]
    if not written:
        raise UserInputError(
            f"the build wrote no {'variant ' + repr(variant) if variant else 'variant'} of {name!r} to release",
            hint="see the build report",
        )
    _fastest, ref = min(
        written, key=lambda pair: min((p.p50_ms for p in pair[0].latency), default=float("inf"))
    )
    return ref.model, ref.version, result.recipe.recipe.validation.metric.value


def _recipe_name(recipe: Path) -> str:
    from tritium.builder.recipe import load_recipe

    return load_recipe(recipe).recipe.name


def _recipe_metric(recipe: Path | None) -> str | None:
    if recipe is None:
        return None
    from tritium.builder.recipe import load_recipe

    return load_recipe(recipe).recipe.validation.metric.value


def _parity_inputs(recipe: Path | None, repository: Path, model: str, version: int):  # type: ignore[no-untyped-def]
    """Inputs like the build's verification inputs: the recipe's shapes and value ranges."""
    if recipe is None:
        lineage = repository / model / str(version) / "lineage.json"
        if lineage.is_file():
            import json

            path = json.loads(lineage.read_text()).get("recipe", {}).get("path")
            recipe = Path(path) if path and Path(path).is_file() else None
    if recipe is None:
        return None
    import numpy as np

    from tritium.builder.data import synthetic_inputs
    from tritium.builder.recipe import load_recipe

    specs = load_recipe(recipe).recipe.inputs
    return lambda: synthetic_inputs(specs, batch=2, dims={}, rng=np.random.default_rng(0))


def rollback(
    model: Annotated[str, typer.Argument(help="Public (route) name.")],
    gateway: GatewaysOption = None,
    token: TokenOption = None,
    releases: ReleasesOption = Path("releases"),
) -> None:
    """Send MODEL back to the version that served before its last promoted release (on every gateway
    and Triton that release drove, unless --gateway names others)."""
    from contextlib import ExitStack

    from tritium.gateway.admin_client import AdminClient
    from tritium.release import plan
    from tritium.release.fleet import Fleet
    from tritium.release.record import Outcome, ReleaseStore
    from tritium.release.runner import ROUTE_PROPAGATION_S

    store = ReleaseStore(releases)
    promoted = [
        r for r in store.all(model) if r.outcome is Outcome.PROMOTED and r.previous_version is not None
    ]
    if not promoted:
        raise NotFoundError(
            f"no promoted release of {model!r} with a version before it", hint=f"see {releases}"
        )
    record = promoted[-1]
    with ExitStack() as stack:
        from tritium.release.discovery import expand

        urls = _distinct("--gateway", expand("--gateway", gateway or record.gateways))
        tritons = _distinct("--triton", expand("--triton", record.tritons))
        fleet = Fleet(tritons, [stack.enter_context(AdminClient(url, token)) for url in urls])
        fleet.ensure_version(record.triton_model, record.previous_version)
        fleet.wait_ready(record.triton_model, record.previous_version, timeout_s=300)
        route = fleet.route(model)
        if route is None:
            raise NotFoundError(f"no route for {model!r} on {urls[0]}", hint="see `tritium routes list`")
        previous = {"model": record.triton_model, "version": str(record.previous_version)}
        fleet.put(model, plan.restored(route, previous))
    time.sleep(ROUTE_PROPAGATION_S)
    record.outcome = Outcome.ROLLED_BACK
    record.decide(
        "rollback",
        True,
        f"{os.environ.get('USER', 'someone')} rolled back to version {record.previous_version}",
    )
    store.save(record)
    console.print(
        f"{model}: version {record.previous_version} serves again (release {record.id} rolled back)"
    )


@releases_app.command("list")
def list_releases(
    model: Annotated[str | None, typer.Option("--model", help="Only this model's.")] = None,
    releases: ReleasesOption = Path("releases"),
) -> None:
    """List the release records."""
    from tritium.release.record import ReleaseStore

    table = Table("id", "model", "version", "from", "strategy", "phase", "outcome")
    for r in ReleaseStore(releases).all(model):
        table.add_row(
            r.id,
            r.model,
            str(r.candidate_version),
            str(r.previous_version),
            r.strategy.value,
            r.phase.value,
            r.outcome.value,
        )
    console.print(table)


@releases_app.command("show")
def show_release(release_id: str, releases: ReleasesOption = Path("releases")) -> None:
    """Show a release record (phases, decisions, evidence)."""
    from tritium.release.record import ReleaseStore

    console.print(escape(ReleaseStore(releases).load(release_id).to_markdown()))
