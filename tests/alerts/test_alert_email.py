"""Email alerts over SMTP against aiosmtpd in its own process: STARTTLS with the
server's certificate checked, AUTH from the environment, all recipients, HTML escaped."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from alert_servers import SmtpServer

from kaudit.alerts.notifiers import build_notifier
from kaudit.alerts.rules import Evaluator
from kaudit.alerts.ruleset import compile_rules
from kaudit.alerts.state import AlertRecord
from kaudit.config import load_config_text
from kaudit.config.alerts import Notify
from kaudit.errors import NotificationError

EVENT: dict[str, Any] = {
    "timestamp": "2026-11-22T10:15:30.123Z",
    "event_type": "access.denied",
    "event_id": "evt_1",
    "actor": {"id": "<script>bob</script>"},
    "resource": {"type": "topic", "id": "orders"},
}


def _email(smtp: SmtpServer, ca_file: Path, **extra: Any) -> tuple[Notify, AlertRecord]:
    target = {"type": "email", "smtp_server": f"127.0.0.1:{smtp.port}",
              "from": "kafka-backup@company.com",
              "to": ["ops@company.com", "security@company.com"], "ca_file": str(ca_file),
              "template": "{{ .event_type }} by {{ .actor.id }}", **extra}  # fmt: skip
    rule = {"name": "access-denied-spike", "condition": "event_type == 'access.denied'",
            "severity": "medium", "notify": [target]}  # fmt: skip
    config = load_config_text(orjson.dumps({"audit": {"alerts": [rule]}}).decode())
    evaluator = Evaluator(compile_rules(config.audit.alerts, config.audit.builtin_alerts))
    (alert,) = evaluator.judge(EVENT, evaluator.candidates("access.denied") or [])
    return config.audit.alerts[0].notify[0], alert


def test_email_goes_over_starttls_with_login_to_every_recipient(
    smtp: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SMTP_USERNAME", smtp.USER)
    monkeypatch.setenv("SMTP_PASSWORD", smtp.PASSWORD)
    before = len(list(smtp.mail_dir.glob("*.eml")))
    target, alert = _email(smtp, smtp.pki.ca_file)
    build_notifier(target).send(alert)
    message = smtp.messages(before + 1)[-1]
    assert message["X-Envelope-To"] == "ops@company.com, security@company.com"
    assert message["From"] == "kafka-backup@company.com"
    assert message["Subject"] == "[kaudit medium] access-denied-spike: access.denied"
    plain = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert plain is not None and html is not None
    assert plain.get_content().strip() == "access.denied by <script>bob</script>"
    assert "access.denied by &lt;script&gt;bob&lt;/script&gt;" in html.get_content()


def test_wrong_password_is_kept_for_a_retry(
    smtp: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SMTP_USERNAME", smtp.USER)
    monkeypatch.setenv("SMTP_PASSWORD", "wrong")
    target, alert = _email(smtp, smtp.pki.ca_file)
    with pytest.raises(NotificationError, match="535") as caught:
        build_notifier(target).send(alert)
    assert caught.value.retryable


def test_certificate_of_an_unknown_ca_is_refused(
    smtp: SmtpServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kaudit_destination_servers import make_pki

    monkeypatch.setenv("SMTP_USERNAME", smtp.USER)
    monkeypatch.setenv("SMTP_PASSWORD", smtp.PASSWORD)
    other = make_pki(tmp_path / "other", "other")
    target, alert = _email(smtp, other.ca_file)
    with pytest.raises(NotificationError, match="CERTIFICATE_VERIFY_FAILED"):
        build_notifier(target).send(alert)


def test_without_starttls_the_server_refuses_to_authenticate(
    smtp: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SMTP_USERNAME", smtp.USER)
    monkeypatch.setenv("SMTP_PASSWORD", smtp.PASSWORD)
    target, alert = _email(smtp, smtp.pki.ca_file, starttls=False)
    with pytest.raises(NotificationError):
        build_notifier(target).send(alert)
