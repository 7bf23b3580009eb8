"""Real servers the destination tests deliver to, each in its own process or thread.

- `MotoServer`: moto's S3 and CloudWatch Logs API server (`python -m moto.server`) in
  its own process; `pause()` / `resume()` stop and continue it (SIGSTOP / SIGCONT), which
  is a destination that stops answering, with its stored data kept.
- `Rsyslog`: Debian's rsyslogd on loopback with its own config, pid file and work
  directory, listening on UDP, TCP (octet counting) and TLS (RFC 5425, gtls driver), and
  writing what it received to a file, one line per message with the fields it parsed.
- `HttpReceiver`: an HTTP server in a thread that records each request and can be told to
  answer 5xx or 4xx, to hang past the client's timeout, to go away and to come back.
"""

from __future__ import annotations

import datetime as dt
import http.server
import ipaddress
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(
    port: int, deadline_s: float = 30.0, proc: subprocess.Popen[Any] | None = None
) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {deadline_s} s")


# ---------------------------------------------------------------------------- moto


class MotoServer:
    """moto in server mode: one process serving every AWS API on one port."""

    def __init__(self, log_path: Path, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )
        wait_for_port(self.port, proc=self.proc)

    def reset(self) -> None:
        request = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=10):
            pass

    def pause(self) -> None:
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.proc.pid, signal.SIGCONT)

    def stop(self) -> None:
        self.resume()
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()

    def client(
        self,
        service: str,
        key_id: str = "testing",
        secret: str = "testing",
        *,
        region: str = "us-east-1",
    ) -> Any:
        import boto3

        return boto3.client(
            service,
            region_name=region,
            endpoint_url=self.url,
            aws_access_key_id=key_id,
            aws_secret_access_key=secret,
        )

    def access(self) -> dict[str, Any]:
        """Destination settings reaching this server."""
        return {
            "endpoint_url": self.url,
            "region": "us-east-1",
            "access_key_id": "testing",
            "secret_access_key": "testing",
        }


# ---------------------------------------------------------------------------- TLS


@dataclass
class TestPki:
    """A CA and a server certificate for 127.0.0.1 / localhost, as PEM files."""

    ca_file: Path
    cert_file: Path
    key_file: Path


def make_pki(directory: Path, name: str = "test") -> TestPki:
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"kaudit {name} CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([x509.OID_SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pki = TestPki(directory / "ca.pem", directory / "cert.pem", directory / "key.pem")
    pki.ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    pki.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pki.key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    pki.key_file.chmod(0o600)  # kaudit refuses a private key others can read, as ssh does
    return pki


# ---------------------------------------------------------------------------- rsyslog

_FIELDS = ("facility", "severity", "hostname", "app", "msgid", "sd", "msg")


@dataclass(frozen=True)
class SyslogLine:
    """One message as rsyslog parsed it."""

    facility: str
    severity: str
    hostname: str
    app: str
    msgid: str
    sd: str
    msg: str

    def event(self) -> dict[str, Any]:
        body = self.msg.lstrip("\ufeff").strip()
        return dict(orjson.loads(body))


class Rsyslog:
    """rsyslogd in the foreground, on loopback, with everything under `directory`."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "work").mkdir(exist_ok=True)
        self.pki = make_pki(self.dir / "pki", "rsyslog")
        self.udp_port = free_port(socket.SOCK_DGRAM)
        self.tcp_port = free_port()
        self.tls_port = free_port()
        self.output = self.dir / "received.log"
        self.conf = self.dir / "rsyslog.conf"
        self.conf.write_text(self._config())
        self.proc: subprocess.Popen[bytes] | None = None

    def _config(self) -> str:
        fields = "\\t".join(
            f"%{p}%"
            for p in (
                "syslogfacility-text",
                "syslogseverity-text",
                "hostname",
                "app-name",
                "msgid",
                "structured-data",
                "msg",
            )
        )
        return f"""
global(
  workDirectory="{self.dir / "work"}"
  maxMessageSize="256k"
  defaultNetstreamDriverCAFile="{self.pki.ca_file}"
  defaultNetstreamDriverCertFile="{self.pki.cert_file}"
  defaultNetstreamDriverKeyFile="{self.pki.key_file}"
)
module(load="imudp")
module(load="imtcp" maxSessions="100")
input(type="imudp" address="127.0.0.1" port="{self.udp_port}")
input(type="imtcp" address="127.0.0.1" port="{self.tcp_port}")
input(type="imtcp" address="127.0.0.1" port="{self.tls_port}" name="tls"
      streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="anon")
template(name="kaudit_test" type="string" string="{fields}\\n")
action(type="omfile" file="{self.output}" template="kaudit_test" flushOnTXEnd="on")
"""

    def start(self) -> None:
        """Start rsyslogd, unless it is running already."""
        if self.proc is not None and self.proc.poll() is None:
            return
        log = open(self.dir / "rsyslogd.out", "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(
            ["rsyslogd", "-n", "-f", str(self.conf), "-i", str(self.dir / "rsyslogd.pid")],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        wait_for_port(self.tcp_port, proc=self.proc)
        wait_for_port(self.tls_port, proc=self.proc)

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def lines(self) -> list[SyslogLine]:
        if not self.output.exists():
            return []
        out = []
        # Whole lines only: rsyslogd may be half way through writing the last one.
        for raw in self.output.read_bytes().split(b"\n")[:-1]:
            parts = raw.decode().split("\t", len(_FIELDS) - 1)
            if len(parts) == len(_FIELDS):
                out.append(SyslogLine(*parts))
        return out

    def destination(self, protocol: str, **extra: Any) -> dict[str, Any]:
        port = {"udp": self.udp_port, "tcp": self.tcp_port, "tls": self.tls_port}[protocol]
        settings: dict[str, Any] = {
            "type": "syslog",
            "server": f"127.0.0.1:{port}",
            "protocol": protocol,
            "facility": "local3",
        }
        if protocol == "tls":
            settings["tls"] = {"ca_file": str(self.pki.ca_file)}
        return {**settings, **extra}


# ---------------------------------------------------------------------------- HTTP


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class HttpBehaviour:
    """What the receiver answers next: `status` for the next `times` requests (forever
    when None), then 200; `hang_s` delays the answer; `validate` checks each body and
    answers 400 with its message when it returns one."""

    status: int = 200
    times: int | None = None
    hang_s: float = 0.0
    retry_after: str | None = None
    validate: Any = None
    answers: list[int] = field(default_factory=list)


Answer = Callable[[str, dict[str, str], bytes], tuple[int, bytes, dict[str, str]]]
"""(path, headers, body) -> (status, body, extra headers) of a POST."""


def serve_posts(port: int, answer: Answer) -> http.server.ThreadingHTTPServer:
    """An HTTP server on 127.0.0.1:`port`, serving in a daemon thread, whose POSTs are
    answered by `answer`; a client that gave up waiting is not an error."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            status, text, extra = answer(self.path, dict(self.headers), body)
            try:
                self.send_response(status)
                for name, value in extra.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(text)))
                self.end_headers()
                self.wfile.write(text)
            except OSError:
                pass  # the client gave up waiting

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    return server


class HttpReceiver:
    """An HTTP server in a thread that records every request it accepts (2xx)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/ingest"
        self.received: list[Received] = []
        self.behaviour = HttpBehaviour()
        self._lock = threading.Lock()
        self._server: http.server.ThreadingHTTPServer | None = None

    def start(self) -> None:
        self._server = serve_posts(self.port, self._answer)

    def _answer(
        self, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, bytes, dict[str, str]]:
        with self._lock:
            b = self.behaviour
            status = b.status
            if b.times is not None:
                if b.times <= 0:
                    status = 200
                else:
                    b.times -= 1
            hang = b.hang_s if status == 200 or b.hang_s else 0.0
            extra = {"Retry-After": b.retry_after} if b.retry_after and status == 429 else {}
        if hang:
            time.sleep(hang)
        if status == 200 and b.validate is not None:
            problem = b.validate(body)
            if problem:
                b.answers.append(400)
                return 400, problem.encode(), {}
        b.answers.append(status)
        if status == 200:
            with self._lock:
                self.received.append(Received(path, headers, body))
            return 200, b"ok", {}
        return status, b"unavailable" if status >= 500 else b"refused", extra

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    def bodies(self) -> list[Any]:
        with self._lock:
            return [orjson.loads(r.body) for r in self.received]
