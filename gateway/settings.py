"""Gateway settings: defaults, then a YAML settings file, then TRITIUM_GATEWAY_* variables, then arguments."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from tritium.errors import UserInputError
from tritium.gateway.routes import CanaryPolicy

ENV_PREFIX = "TRITIUM_GATEWAY_"


class GatewaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid")

    host: str = "127.0.0.1"
    http_port: int = Field(default=8080, ge=0, le=65535)
    grpc_port: int | None = Field(default=8081, ge=0, le=65535, description="None disables the gRPC server")
    triton_http_url: str = "127.0.0.1:8000"
    triton_grpc_url: str = "127.0.0.1:8001"
    route_file: Path = Path("routes.yaml")
    audit_file: Path | None = Field(
        default=None, description="JSON lines of route changes; default beside the route file"
    )
    admin_token: SecretStr | None = None
    api_keys: list[SecretStr] = Field(default_factory=list)
    sticky_header: str = "x-user-id"
    max_payload_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    max_inflight_body_bytes: int = Field(
        default=128 * 1024 * 1024,
        ge=1024,
        description="request bodies (and their decoded copies) one gateway process holds at once; "
        "over it requests are shed with 503 + Retry-After",
    )
    body_timeout_s: float = Field(default=60.0, gt=0, description="a request body must arrive within this")
    max_connections: int = Field(
        default=4096, ge=1, description="open REST connections per gateway process; one more is answered 503"
    )
    allow_model_overrides: bool = Field(
        default=False,
        description="let admin model loads carry config and file overrides: this is code execution on "
        "the Triton host (a file override can be a Python-backend model.py)",
    )
    admin_port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description="serve the admin API on its own port (not the inference one)",
    )
    feedback_keys: list[SecretStr] = Field(
        default_factory=list,
        description="credentials for POST .../feedback (never the admin token); none: off",
    )
    feedback_window_s: float = Field(
        default=3600.0, gt=0, le=3600, description="how long after an answer feedback on it is taken"
    )
    feedback_capacity: int = Field(
        default=100_000, ge=1, description="request ids per process remembered for feedback"
    )
    feedback_rate_per_s: float = Field(
        default=100.0, gt=0, description="feedback posts a second, per process"
    )
    model_index_refresh_s: float = Field(
        default=10.0, gt=0, description="how often Triton's repository index is read for metric labels"
    )
    upstream_timeout_s: float = Field(default=30.0, gt=0)
    upstream_connections: int = Field(default=256, ge=1)
    check_targets: bool = Field(
        default=True, description="refuse route changes to targets Triton has not loaded"
    )
    shadow_max_in_flight: int = Field(default=64, ge=1)
    canary_interval_s: float = Field(default=5.0, gt=0)
    route_refresh_s: float = Field(
        default=1.0, gt=0, description="how often the route file is checked for changes made elsewhere"
    )
    workers: int = Field(default=1, ge=1, le=256, description="gateway processes sharing the ports")
    state_dir: Path | None = Field(
        default=None,
        description="where several workers share canary windows and metrics; default a temporary directory",
    )
    canary: CanaryPolicy = CanaryPolicy()

    @field_validator("triton_http_url", "triton_grpc_url")
    @classmethod
    def _host_port(cls, value: str) -> str:
        value = value.removeprefix("http://")
        host, _, port = value.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"expected host:port, got {value!r}")
        return value

    @field_validator("sticky_header")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.lower()

    @model_validator(mode="after")
    def _budget_holds_one_request(self) -> GatewaySettings:
        if self.max_inflight_body_bytes < self.max_payload_bytes:
            raise ValueError(
                f"max_inflight_body_bytes ({self.max_inflight_body_bytes}) must be at least "
                f"max_payload_bytes ({self.max_payload_bytes}), or no request of the largest size passes"
            )
        return self

    @property
    def resolved_audit_file(self) -> Path:
        return self.audit_file or self.route_file.with_name(self.route_file.name + ".audit.jsonl")

    def api_key_values(self) -> frozenset[str]:
        return frozenset(k.get_secret_value() for k in self.api_keys)

    def feedback_key_values(self) -> frozenset[str]:
        return frozenset(k.get_secret_value() for k in self.feedback_keys)


def load_settings(settings_file: Path | None = None, **overrides: Any) -> GatewaySettings:
    """Build settings; overrides (CLI options) beat environment variables, which beat the file."""
    overrides = {k: v for k, v in overrides.items() if v is not None}
    try:
        if settings_file is None:
            return GatewaySettings(**overrides)
        if not settings_file.is_file():
            raise UserInputError(
                f"settings file {settings_file} does not exist", hint="pass an existing YAML file"
            )

        class _FromFile(GatewaySettings):
            model_config = SettingsConfigDict(yaml_file=settings_file)

            @classmethod
            def settings_customise_sources(
                cls,
                settings_cls: type[BaseSettings],
                init_settings: PydanticBaseSettingsSource,
                env_settings: PydanticBaseSettingsSource,
                dotenv_settings: PydanticBaseSettingsSource,
                file_secret_settings: PydanticBaseSettingsSource,
            ) -> tuple[PydanticBaseSettingsSource, ...]:
                return init_settings, env_settings, YamlConfigSettingsSource(settings_cls)

        return _FromFile(**overrides)
    except ValidationError as exc:
        details = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        )
        source = (
            f" (from {settings_file} or {ENV_PREFIX}* variables)"
            if settings_file
            else f" ({ENV_PREFIX}* variables)"
        )
        raise UserInputError(f"invalid gateway settings{source}: {details}") from None


WORKER_SETTINGS_VARIABLE = "TRITIUM_WORKER_SETTINGS"
"""Names the file (in the state directory, readable by its owner only) the workers read settings from."""


def pass_to_workers(settings: GatewaySettings, log_level: str, state_dir: Path) -> None:
    """Write the resolved settings where the worker processes (started after this) read them."""
    data = settings.model_dump(mode="json")
    data["admin_token"] = settings.admin_token.get_secret_value() if settings.admin_token else None
    data["api_keys"] = [key.get_secret_value() for key in settings.api_keys]
    data["feedback_keys"] = [key.get_secret_value() for key in settings.feedback_keys]
    path = state_dir / "worker-settings.json"
    path.unlink(missing_ok=True)
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
        json.dump({"settings": data, "log_level": log_level}, f)
    os.environ[WORKER_SETTINGS_VARIABLE] = str(path)


def worker_settings() -> tuple[GatewaySettings, str]:
    passed = json.loads(Path(os.environ[WORKER_SETTINGS_VARIABLE]).read_text())
    return GatewaySettings(**passed["settings"]), passed["log_level"]


def startup_failure_file(state_dir: Path) -> Path:
    """Where a worker that cannot start leaves its exit code and reason for `tritium gateway`."""
    return state_dir / "startup-failure"
