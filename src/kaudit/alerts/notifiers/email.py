"""Email over SMTP: STARTTLS with the server's certificate checked (against `ca_file`,
else the system's CAs), a login from the environment (`username_env`, `password_env`),
one message to all of `to`, as plain text with an HTML alternative whose values are
HTML-escaped.

A refused connection, a timeout, a 4xx answer and a failed login are worth retrying (the
server or its credentials may come back); a 5xx refusal of the recipients or the message
is not, until the configuration changes.
"""

from __future__ import annotations

import os
import smtplib
import ssl
from email.message import EmailMessage

from kaudit.alerts.notifiers.base import message_text
from kaudit.alerts.state import AlertRecord
from kaudit.config.alert_syntax import parse_template, render_template
from kaudit.config.alerts import EmailNotify
from kaudit.config.secrets import mask, register_secret
from kaudit.errors import NotificationError


class EmailNotifier:
    def __init__(self, target: EmailNotify) -> None:
        self.target = target
        self._subject = parse_template(target.subject)

    def message(self, alert: AlertRecord) -> EmailMessage:
        msg = EmailMessage()
        subject = render_template(self._subject, alert.data)
        if alert.status == "resolved":
            subject = f"[resolved] {alert.rule}"
        msg["Subject"] = " ".join(subject.split())[:250]
        msg["From"] = self.target.from_
        msg["To"] = ", ".join(self.target.to)
        msg["X-Kaudit-Dedup-Key"] = alert.dedup_key
        msg.set_content(message_text(self.target.template, alert, "plain"))
        body = message_text(self.target.template, alert, "html").replace("\n", "<br>\n")
        msg.add_alternative(f"<html><body><p>{body}</p></body></html>", subtype="html")
        return msg

    def send(self, alert: AlertRecord) -> None:
        host, _, port = self.target.smtp_server.rpartition(":")
        where = f"email alert via {self.target.smtp_server}"
        try:
            with smtplib.SMTP(host, int(port), timeout=self.target.timeout) as smtp:
                smtp.ehlo()
                if self.target.starttls:
                    context = ssl.create_default_context(cafile=self.target.ca_file)
                    smtp.starttls(context=context)
                    smtp.ehlo()
                user = os.environ.get(self.target.username_env)
                if user:
                    password = os.environ.get(self.target.password_env, "")
                    register_secret(password)
                    smtp.login(user, password)
                smtp.send_message(self.message(alert))
        except smtplib.SMTPResponseException as exc:
            detail = (
                exc.smtp_error.decode(errors="replace")
                if isinstance(exc.smtp_error, bytes)
                else str(exc.smtp_error)
            )
            raise NotificationError(
                f"{where}: {exc.smtp_code} {mask(detail)}",
                retryable=exc.smtp_code < 500 or isinstance(exc, smtplib.SMTPAuthenticationError),
            ) from exc
        except smtplib.SMTPRecipientsRefused as exc:
            raise NotificationError(
                f"{where}: recipients refused: {exc.recipients}", retryable=False
            ) from exc
        except (OSError, smtplib.SMTPException) as exc:
            raise NotificationError(f"{where}: {mask(str(exc))}", retryable=True) from exc

    def close(self) -> None:
        pass
