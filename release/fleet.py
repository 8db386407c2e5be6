"""The servers one release drives: Triton replicas reading one shared model repository, and gateway
replicas each keeping its own routes.

Models: a version reaches every replica by loading it on each (they read the same repository), and
is verified on each. Routes: every gateway gets the same route document, each by compare-and-set
(`If-Match` with the etag read just before): a replica that cannot take it makes the change undo on
the replicas that already took it, so the fleet is never left half-routed by one step.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from tritium.errors import NotFoundError, TritiumError, UnavailableError


@dataclass(frozen=True)
class GatewayRoute:
    admin: object  # tritium.gateway.admin_client.AdminClient
    route: dict | None
    etag: str


class Fleet:
    def __init__(self, tritons: list[str], gateways: list, say: Callable[[str], None] = print) -> None:  # type: ignore[type-arg]
        if not tritons or not gateways:
            raise ValueError("a fleet needs at least one Triton and one gateway")
        self.tritons = tritons
        self.gateways = gateways
        self.say = say

    @property
    def replicated(self) -> bool:
        """Several gateways: their own canary controllers would each judge a share of the traffic."""
        return len(self.gateways) > 1

    # --- routes ----------------------------------------------------------------------------------
    def routes(self, model: str) -> list[GatewayRoute]:
        found = []
        for admin in self.gateways:
            try:
                answer = admin.call("GET", f"/routes/{model}")
                found.append(GatewayRoute(admin, answer["route"], answer["etag"]))
            except NotFoundError:
                found.append(GatewayRoute(admin, None, '"absent"'))
        return found

    def route(self, model: str) -> dict | None:
        """The route as the first gateway holds it (the release makes every other one equal to it)."""
        return self.routes(model)[0].route

    def put(self, model: str, route: dict | None) -> None:
        """The same route on every gateway (None: no route), or on none of them.

        Checked on every gateway first (`dry_run`: valid, targets loaded in its Triton, route
        unchanged), so a gateway that would refuse it stops the change before any client sees it;
        one that fails between the check and the change makes the others undo it."""
        before = self.routes(model)
        if route is not None:
            for current in before:
                try:
                    current.admin.call(
                        "PUT", f"/routes/{model}?dry_run=true", route, headers={"if-match": current.etag}
                    )
                except TritiumError as exc:
                    raise UnavailableError(
                        f"gateway {current.admin.url} would not take the route of {model!r}: {exc.one_line()}; "
                        "no gateway was changed",
                        hint="check that gateway (reachable, same admin token, its Triton serves the version)",
                    ) from None
        done: list[GatewayRoute] = []
        for current in before:
            try:
                etag = self._set(current.admin, model, route, current.etag)
            except TritiumError as exc:
                undone = self._undo(model, done)
                raise UnavailableError(
                    f"gateway {current.admin.url} could not take the route of {model!r}: {exc.one_line()}; "
                    f"{undone}",
                    hint="check that gateway (reachable, same admin token); the release restores the start",
                ) from None
            done.append(GatewayRoute(current.admin, current.route, etag))

    def _set(self, admin, model: str, route: dict | None, etag: str) -> str:  # type: ignore[no-untyped-def]
        if route is None:
            if etag != '"absent"':
                admin.call("DELETE", f"/routes/{model}")
            return '"absent"'
        return admin.call("PUT", f"/routes/{model}", route, headers={"if-match": etag})["etag"]

    def _undo(self, model: str, done: list[GatewayRoute]) -> str:
        """Each gateway already changed back to the route it had, if nobody changed it since."""
        failed = []
        for previous in done:  # `etag` here is the one the change produced
            try:
                self._set(previous.admin, model, previous.route, previous.etag)
            except TritiumError as exc:
                failed.append(f"{previous.admin.url} ({exc.one_line()})")
        if not done:
            return "no gateway had taken it"
        if failed:
            return "could not undo it on " + ", ".join(failed)
        return f"undone on the {len(done)} gateway(s) that had taken it"

    # --- models ----------------------------------------------------------------------------------
    def served(self, model: str) -> dict[str, set[int]]:
        from tritium.serving.models import served_versions

        return {url: {int(v) for v in served_versions(url, model)} for url in self.tritons}

    def add_version(self, model: str, version: int) -> list[str]:
        """Load `version` on every replica, keeping what each serves; how each was loaded."""
        from tritium.serving.models import load_model

        return [
            load_model(url, model, sorted(served | {version})) for url, served in self.served(model).items()
        ]

    def drop_version(self, model: str, version: int) -> None:
        """Unload `version` from every replica that serves it and something else."""
        from tritium.serving.models import load_model

        for url, served in self.served(model).items():
            if version in served and served - {version}:
                load_model(url, model, sorted(served - {version}))

    def ensure_version(self, model: str, version: int) -> None:
        from tritium.serving.models import load_model

        for url, served in self.served(model).items():
            if version not in served:
                load_model(url, model, sorted(served | {version}))

    def wait_ready(self, model: str, version: int, timeout_s: float) -> None:
        from tritium.serving.control import TritonControl

        deadline = time.time() + timeout_s
        for url in self.tritons:
            with TritonControl(url) as control:
                while True:
                    try:
                        if control.client.is_model_ready(model, str(version)):
                            break
                    except Exception:  # not there yet
                        pass
                    if time.time() > deadline:
                        raise UnavailableError(f"version {version} of {model} did not become ready on {url}")
                    time.sleep(0.2)
