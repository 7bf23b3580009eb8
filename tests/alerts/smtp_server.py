"""An SMTP server for the alert tests (run as its own process): aiosmtpd on 127.0.0.1
with STARTTLS required before anything else and AUTH LOGIN/PLAIN checked against
$SMTP_USER / $SMTP_PASS; each message it accepts is written to MAIL_DIR as NNNN.eml,
with the envelope's recipients in an X-Envelope-To header.

Usage: smtp_server.py PORT CERT KEY MAIL_DIR
"""

from __future__ import annotations

import os
import signal
import ssl
import sys
import threading
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class Handler:
    def __init__(self, mail_dir: Path) -> None:
        self.mail_dir = mail_dir
        self.count = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.count += 1
        tmp = self.mail_dir / f"{self.count:04d}.tmp"
        to = ", ".join(envelope.rcpt_tos)
        tmp.write_bytes(f"X-Envelope-To: {to}\r\n".encode() + envelope.content)
        tmp.rename(tmp.with_suffix(".eml"))
        return "250 OK"


def authenticator(
    server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
) -> AuthResult:
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login.decode() == os.environ["SMTP_USER"]
        and auth_data.password.decode() == os.environ["SMTP_PASS"]
    )
    return AuthResult(success=ok, handled=False)


def main() -> None:
    port, cert, key, mail_dir = sys.argv[1:5]
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    controller = Controller(
        Handler(Path(mail_dir)),
        hostname="127.0.0.1",
        port=int(port),
        tls_context=context,
        require_starttls=True,
        auth_require_tls=True,
        auth_required=True,
        authenticator=authenticator,
    )
    controller.start()
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    stopped.wait()
    controller.stop()


if __name__ == "__main__":
    main()
