"""Command-line options and the configuration file combine: `kaudit gateway --upstream
… --listen … -c FILE` takes the file's gateway settings and fills in (or overrides) the
keys given as options, instead of refusing the file's incomplete `gateway:` section."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from kaudit.cli import main
from kaudit.cli.common import load
from kaudit.cli.run import gateway_overrides


def _file(tmp_path: Path) -> Path:
    config = tmp_path / "kaudit.yaml"
    config.write_text(
        f"data_dir: {tmp_path / 'data'}\n"
        "gateway:\n"
        "  listen: 127.0.0.1:19192\n"
        "  stop_timeout_seconds: 4\n"
        "  records_window_seconds: 5\n"
    )
    return config


def test_upstream_on_the_command_line_completes_the_files_gateway_section(tmp_path: Path) -> None:
    config_path = str(_file(tmp_path))
    config = load(config_path, gateway_overrides("kafka-1:9092,kafka-2:9092", None, config_path))
    assert config.gateway is not None
    assert config.gateway.upstream == ["kafka-1:9092", "kafka-2:9092"]  # from the option
    assert config.gateway.listen == "127.0.0.1:19192"  # from the file
    assert config.gateway.stop_timeout_seconds == 4 and config.gateway.records_window_seconds == 5


def test_an_option_overrides_the_files_value(tmp_path: Path) -> None:
    config_path = str(_file(tmp_path))
    overrides = gateway_overrides("kafka:9092", "0.0.0.0:29192", config_path)
    config = load(config_path, overrides)
    assert config.gateway is not None and config.gateway.listen == "0.0.0.0:29192"


def test_options_alone_make_the_gateway_section() -> None:
    config = load(None, gateway_overrides("kafka:9092", None, None))
    assert config.gateway is not None and config.gateway.upstream == ["kafka:9092"]


def test_without_upstream_anywhere_the_error_names_the_file_and_the_key(tmp_path: Path) -> None:
    config_path = _file(tmp_path)
    result = CliRunner().invoke(main, ["gateway", "-c", str(config_path)])
    assert result.exit_code == 2
    assert f"kaudit: error: {config_path}: invalid configuration" in result.stderr
    assert "gateway.upstream" in result.stderr


def test_help_says_where_the_other_settings_live() -> None:
    for command in ("gateway", "run", "generate", "tail"):
        out = CliRunner().invoke(main, [command, "--help"]).output
        assert "Every setting without an option of its own lives there" in " ".join(out.split())
