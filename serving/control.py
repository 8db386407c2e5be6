"""Talk to a running Triton over gRPC: readiness, repository index, explicit load and unload.

gRPC rather than HTTP for repository control: loads over HTTP stalled HTTP inference for seconds
(server#8958). Triton's errors become :mod:`tritium.errors` through :mod:`tritium.triton_errors`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import tenacity
import tritonclient.grpc as grpcclient
from google.protobuf import json_format
from tritonclient.grpc import model_config_pb2 as mc
from tritonclient.utils import InferenceServerException

from tritium.errors import NotFoundError, UnavailableError
from tritium.triton_errors import TritonCall, from_client, one_line


@dataclass(frozen=True)
class ModelState:
    name: str
    version: str
    state: str
    reason: str


class NotReadyYet(Exception):
    pass


class TritonControl:
    """Repository control of the Triton at ``url`` (``host:port`` of its gRPC endpoint)."""

    def __init__(self, url: str, *, timeout_s: float = 120.0) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self.client = grpcclient.InferenceServerClient(url)

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> TritonControl:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def is_ready(self) -> bool:
        try:
            return bool(self.client.is_server_live() and self.client.is_server_ready())
        except InferenceServerException:
            return False

    def wait_ready(self, timeout_s: float, *, alive=lambda: True, also_ready=lambda: True) -> None:
        """Poll until the server answers ready and ``also_ready()``; ``alive()`` False (process gone) stops early."""

        @tenacity.retry(
            retry=tenacity.retry_if_exception_type(NotReadyYet),
            stop=tenacity.stop_after_delay(timeout_s),
            wait=tenacity.wait_exponential(multiplier=0.05, max=0.5),
            reraise=True,
        )
        def poll() -> None:
            if not alive():
                raise UnavailableError(f"Triton at {self.url} exited before it was ready")
            if not self.is_ready() or not also_ready():
                raise NotReadyYet

        try:
            poll()
        except NotReadyYet:
            raise UnavailableError(
                f"Triton at {self.url} was not ready within {timeout_s:.0f} s",
                hint="check its log, or raise --ready-timeout",
            ) from None

    def index(self) -> list[ModelState]:
        response = self._call(lambda: self.client.get_model_repository_index(as_json=True))
        return [
            ModelState(m["name"], m.get("version", ""), m.get("state", ""), one_line(m.get("reason", "")))
            for m in response.get("models", [])
        ]

    def failed_models(self) -> dict[str, str]:
        return {m.name: m.reason for m in self.index() if m.state == "UNAVAILABLE" and m.reason}

    def model_config(self, name: str) -> mc.ModelConfig:
        response = self._call(lambda: self.client.get_model_config(name), model=name)
        return response.config

    def load(
        self, name: str, *, config: mc.ModelConfig | None = None, files: dict[str, bytes] | None = None
    ) -> None:
        """Load or reload ``name``; a failure raises :class:`RepositoryError` with Triton's reason.

        ``files`` (``{"1/model.onnx": bytes}``, needs ``config``) are Triton's file overrides: the model is
        loaded from them instead of the server's repository, which need not hold it (trusted callers only:
        for the Python backend a file override is code the server runs).
        """
        override = json.dumps(json_format.MessageToDict(config)) if config is not None else None
        overrides = {f"file:{path}": content for path, content in files.items()} if files else None
        try:
            self.client.load_model(name, config=override, files=overrides, client_timeout=self.timeout_s)
        except InferenceServerException as exc:
            raise from_client(exc, call=TritonCall.LOAD, what=f"model '{name}'", url=self.url) from None

    def discard(self, name: str) -> None:
        """Unload a model that was loaded from file overrides (the repository index does not list it)."""
        self._call(lambda: self.client.unload_model(name, client_timeout=self.timeout_s), model=name)

    def is_model_ready(self, name: str, version: str = "") -> bool:
        return bool(self._call(lambda: self.client.is_model_ready(name, version), model=name))

    def server_metadata(self) -> dict:
        return self._call(lambda: self.client.get_server_metadata(as_json=True))

    def statistics(self, name: str, version: str = "") -> dict:
        """Triton's cumulative statistics of one model version (``model_stats[0]`` of the JSON answer)."""
        response = self._call(
            lambda: self.client.get_inference_statistics(name, version, as_json=True), model=name
        )
        return (response.get("model_stats") or [{}])[0]

    def unload(self, name: str) -> None:
        known = {m.name for m in self.index()}
        if name not in known:
            raise NotFoundError(
                f"no model '{name}' on Triton at {self.url}", hint="see `tritium models list`"
            )
        self._call(lambda: self.client.unload_model(name, client_timeout=self.timeout_s), model=name)
        self._wait_unloaded(name)

    def _wait_unloaded(self, name: str) -> None:
        """Triton unloads in the background once in-flight requests finish: wait for it (bounded)."""

        @tenacity.retry(
            retry=tenacity.retry_if_exception_type(NotReadyYet),
            stop=tenacity.stop_after_delay(self.timeout_s),
            wait=tenacity.wait_fixed(0.1),
            reraise=True,
        )
        def poll() -> None:
            if any(m.name == name and m.state in ("READY", "UNLOADING") for m in self.index()):
                raise NotReadyYet

        try:
            poll()
        except NotReadyYet:
            raise UnavailableError(
                f"model '{name}' was still unloading after {self.timeout_s:.0f} s"
            ) from None

    def _call(self, fn, *, model: str | None = None):
        try:
            return fn()
        except InferenceServerException as exc:
            what = f"model '{model}'" if model else "the repository"
            raise from_client(exc, call=TritonCall.CONTROL, what=what, url=self.url) from None
