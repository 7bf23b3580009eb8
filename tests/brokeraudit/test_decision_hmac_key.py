"""The decision records' HMAC key in kaudit's configuration: from the setting or a file,
trailing whitespace left off as the plugin does, and refused saying why when it is too
short, unreadable, or given twice."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from kaudit.brokeraudit.reader import hmac_key
from kaudit.config.model import BrokerAuditorConfig
from kaudit.errors import ConfigError


def section(**fields: object) -> BrokerAuditorConfig:
    return BrokerAuditorConfig.model_validate({"bootstrap_servers": ["broker:9092"], **fields})


def test_the_key_comes_from_the_setting_or_the_file_like_the_plugin_reads_it(
    tmp_path: Path,
) -> None:
    key = "0123456789abcdef0123456789abcdef"
    (tmp_path / "key").write_text(key + "\n", encoding="utf-8")
    assert hmac_key(section()) is None
    assert hmac_key(section(hmac_key=key + " ")) == key.encode()
    assert hmac_key(section(hmac_key_file=str(tmp_path / "key"))) == key.encode()


def test_a_short_unreadable_or_doubled_key_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="at least 16"):
        hmac_key(section(hmac_key="short"))
    with pytest.raises(ConfigError, match="hmac_key_file: cannot read it"):
        hmac_key(section(hmac_key_file=str(tmp_path / "missing")))
    with pytest.raises(ValidationError, match="not both"):
        section(hmac_key="0123456789abcdef", hmac_key_file=str(tmp_path / "key"))


def test_a_key_file_ending_in_bytes_java_calls_whitespace_reads_as_the_plugin_reads_it(
    tmp_path: Path,
) -> None:
    """The plugin leaves off what Character.isWhitespace calls whitespace, 0x1C-0x1F
    included; a binary key ending so must give both sides the same key."""
    raw = bytes(range(0x20, 0x40)) + b"\x1f\x1c\t\n"
    (tmp_path / "key").write_bytes(raw)
    assert hmac_key(section(hmac_key_file=str(tmp_path / "key"))) == bytes(range(0x20, 0x40))
    (tmp_path / "key").write_bytes(bytes(range(0x20, 0x40)) + b"\x80")
    assert hmac_key(section(hmac_key_file=str(tmp_path / "key"))).endswith(b"\x80")  # type: ignore[union-attr]
