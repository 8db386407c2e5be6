from pathlib import Path

import pytest

from tritium.errors import UserInputError
from tritium.gateway.settings import load_settings


def test_defaults():
    s = load_settings()
    assert (s.http_port, s.grpc_port, s.triton_grpc_url) == (8080, 8081, "127.0.0.1:8001")
    assert s.admin_token is None and s.api_key_values() == frozenset()
    assert s.resolved_audit_file == Path("routes.yaml.audit.jsonl")


def test_file_then_env_then_arguments(tmp_path, monkeypatch):
    f = tmp_path / "gateway.yaml"
    f.write_text(
        "http_port: 9000\ngrpc_port: 9001\nadmin_token: from-file\napi_keys: [a, b]\ncanary: {window_s: 5}\n"
    )
    s = load_settings(f)
    assert (s.http_port, s.grpc_port, s.admin_token.get_secret_value()) == (9000, 9001, "from-file")
    assert s.api_key_values() == {"a", "b"} and s.canary.window_s == 5
    monkeypatch.setenv("TRITIUM_GATEWAY_HTTP_PORT", "9100")
    monkeypatch.setenv("TRITIUM_GATEWAY_CANARY__MIN_REQUESTS", "7")
    s = load_settings(f)
    assert s.http_port == 9100 and s.canary.min_requests == 7 and s.canary.window_s == 5
    assert load_settings(f, http_port=9200, grpc_port=None).http_port == 9200
    assert "secret" not in repr(load_settings(admin_token="secret"))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("http_port: 99999", "http_port"),
        ("triton_grpc_url: nohost", "expected host:port"),
        ("colour: red", "colour"),
        ("canary: {steps: [50, 10, 100]}", "strictly increase"),
    ],
)
def test_invalid_settings_are_one_line(tmp_path, content, message):
    f = tmp_path / "gateway.yaml"
    f.write_text(content)
    with pytest.raises(UserInputError, match=message) as info:
        load_settings(f)
    assert "\n" not in str(info.value)


def test_missing_settings_file(tmp_path):
    with pytest.raises(UserInputError, match="does not exist"):
        load_settings(tmp_path / "none.yaml")
