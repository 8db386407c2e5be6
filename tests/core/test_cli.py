"""The `tritium` entry point: usage errors are click's one-line message and exit code 2, never a traceback."""

import pytest

from tritium.cli import main


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["serve", "--http-port", "abc"], "Invalid value for '--http-port'"),
        (["serve", "--no-such-option"], "No such option: --no-such-option"),
        (["serve", "--runtime", "podman"], "Invalid value for '--runtime'"),
        (["models", "load"], "Missing argument 'name'"),
    ],
)
def test_usage_errors_are_exit_2_with_the_reason(argv, message, capsys) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
