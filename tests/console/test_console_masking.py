"""Masking rules on inspected messages: JSON keys at any depth or by dotted path, header
globs, a pattern over text, only on the topics a rule names; and the three renderings."""

from __future__ import annotations

import orjson

from kaudit.config.console import MaskRule
from kaudit.console.masking import MASK, Masker, render_bytes

RULES = [
    MaskRule(topics=["pay*"], fields=["card", "owner.ssn"], headers=["x-secret-*"]),
    MaskRule(topics=["logs"], pattern=r"\d{4}-\d{4}-\d{4}-\d{4}"),
]


def test_fields_by_key_anywhere_and_by_dotted_path() -> None:
    masker = Masker(RULES, "payments")
    value = orjson.dumps(
        {
            "card": "4111",
            "items": [{"card": "5500"}],
            "owner": {"ssn": "1", "name": "Al"},
            "ssn": "top-level is not owner.ssn",
        }
    )
    masked = orjson.loads(masker.value(value) or b"")
    assert masked == {
        "card": MASK,
        "items": [{"card": MASK}],
        "owner": {"ssn": MASK, "name": "Al"},
        "ssn": "top-level is not owner.ssn",
    }


def test_headers_by_glob_and_text_by_pattern() -> None:
    masker = Masker(RULES, "payments")
    assert masker.header("X-Secret-Token", b"abc") == MASK.encode()
    assert masker.header("trace", b"abc") == b"abc"
    logs = Masker(RULES, "logs")
    assert logs.value(b"paid with 4111-1111-1111-1111 ok") == b"paid with **** ok"


def test_rules_apply_only_to_their_topics() -> None:
    assert not Masker(RULES, "orders")
    assert Masker(RULES, "orders").value(b'{"card": 1}') == b'{"card": 1}'
    assert Masker(RULES, "payments").value(None) is None


def test_field_rules_fail_closed_on_values_they_cannot_read() -> None:
    masker = Masker(RULES, "payments")
    assert masker.value(b"not json") == MASK.encode()
    assert masker.value(b'"card=4111"') == MASK.encode()
    assert masker.value(b"\x00\x01\x02") == MASK.encode()
    assert masker.value(b"42") == b"42"


def test_field_rules_see_past_a_bom_a_schema_prefix_and_json_in_a_string() -> None:
    masker = Masker(RULES, "payments")
    card = {"card": "4111", "note": "hi"}
    hidden = {"card": MASK, "note": "hi"}
    bom = b"\xef\xbb\xbf" + orjson.dumps(card)
    confluent = b"\x00\x00\x00\x00\x07" + orjson.dumps(card)
    in_a_string = orjson.dumps(orjson.dumps(card).decode())
    for value in (bom, confluent, in_a_string):
        assert orjson.loads(masker.value(value) or b"") == hidden, value
    nested = orjson.dumps({"payload": orjson.dumps(card).decode()})
    shown = orjson.loads(masker.value(nested) or b"")
    assert orjson.loads(shown["payload"]) == hidden


def test_patterns_apply_to_keys_and_header_values() -> None:
    logs = Masker(RULES, "logs")
    assert logs.key(b"4111-1111-1111-1111") == MASK.encode()
    assert logs.key(None) is None
    assert logs.header("trace", b"card 4111-1111-1111-1111") == b"card ****"


def test_renderings() -> None:
    assert render_bytes(b'{"a": 1}', "json") == {"a": 1}
    assert render_bytes(b"plain", "json") == "plain"
    assert render_bytes(b"\x00\xff", "hex") == "00ff"
    assert render_bytes(b"\xff", "text") == "\ufffd"
