"""The seed's `syslog` destination: RFC 5424 messages with structured data, over UDP
(RFC 5426), TCP with octet counting (RFC 6587) or TLS (RFC 5425).

Each event is one message: PRI from `facility` and a severity from the result (notice
for success, warning for denied, error for failure), the event's time, this host,
`app_name`, the event type as MSGID, structured data `[kaudit@32473 ...]` holding the
event id, type, actor, resource, result and sequence number, and the event rendered in
the destination's `format` as the message.

TCP and TLS have no application-level acknowledgement. A batch counts as delivered once
the server's kernel has acknowledged every byte (the socket's send queue is empty), and
it stays "in doubt" until the server has been seen connected `IN_DOUBT_SECS` later: if
the connection turns out to be closed when the next batch goes, the batches still in
doubt are sent again on the new connection. A server that stopped before reading them
loses nothing, at the price of duplicates from the last second of batches. The runner
saves its cursor only past settled batches (`unsettled_since`), so this also holds when
kaudit itself is killed while batches are in doubt. UDP is
fire-and-forget by nature: only what the kernel reports (no route, port unreachable) is
seen as a failure.
"""

from __future__ import annotations

import fcntl
import select
import socket
import ssl
import struct
import termios
import time
from dataclasses import dataclass

from kaudit.config.model import SYSLOG_FACILITIES, SyslogDestination
from kaudit.errors import ExporterError, RecordsRejectedError
from kaudit.exporters.records import EventFields, Rendered, render_lines
from kaudit.files import UnprotectedKeyError, check_private_key

# 32473 is the enterprise number RFC 5612 reserves for documentation and examples.
SD_ID = "kaudit@32473"
NILVALUE = "-"
MAX_UDP_MESSAGE = 65_507
IN_DOUBT_SECS = 1.0
"""How long after a batch the server must still be connected for the batch to count as
read (plain TCP and TLS syslog have no acknowledgements of their own)."""
_SEVERITY = {"success": 5, "denied": 4, "failure": 3}


def _sd_escape(value: str) -> str:
    # RFC 5424 section 6.3.3: '"', '\' and ']' are escaped inside PARAM-VALUE.
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def _header_token(value: str | None, limit: int) -> str:
    """A header field: printable US-ASCII without spaces, at most `limit` characters."""
    if not value:
        return NILVALUE
    token = "".join(c if "!" <= c <= "~" else "_" for c in value)[:limit]
    return token or NILVALUE


def format_message(
    event: EventFields, body: bytes, facility: int, hostname: str, app: str
) -> bytes:
    """One RFC 5424 SYSLOG-MSG for `event`, with `body` as its MSG."""
    pri = facility * 8 + _SEVERITY.get(event.result, 5)
    params = [
        ("event_id", event.event_id),
        ("event_type", event.event_type),
        ("actor", event.actor_id),
        ("resource", f"{event.resource_type}:{event.resource_id}"),
        ("result", event.result),
    ]
    if event.sequence is not None:
        params.append(("sequence", str(event.sequence)))
    if event.cluster_id:
        params.append(("cluster", event.cluster_id))
    data = " ".join(f'{name}="{_sd_escape(str(value))}"' for name, value in params)
    header = (
        f"<{pri}>1 {event.timestamp} {_header_token(hostname, 255)} {_header_token(app, 48)} "
        f"{NILVALUE} {_header_token(event.event_type, 32)} [{SD_ID} {data}] "
    )
    # The BOM marks MSG as UTF-8 (RFC 5424 section 6.4).
    return header.encode() + b"\xef\xbb\xbf" + body


@dataclass
class _InDoubt:
    """Frames sent on a connection the server may close before reading them."""

    first_sent: float
    sent_at: float
    data: bytes


class SyslogExporter:
    """Sends each event as one syslog message."""

    native_input = True

    def __init__(self, destination: SyslogDestination) -> None:
        self.destination = destination
        self.name = destination.display_name
        self.host, self.port = destination.address
        self.facility = SYSLOG_FACILITIES[destination.facility]
        self.hostname = socket.gethostname()
        self._sock: socket.socket | None = None
        self._in_doubt: list[_InDoubt] = []
        """(when, frames) sent lately on the current connection, which the server may not
        have read if it stops: sent again on the next connection."""

    @property
    def _where(self) -> str:
        return f"syslog destination {self.name}"

    def _messages(self, rendered: list[Rendered]) -> list[bytes]:
        return [
            format_message(
                r.fields, r.body, self.facility, self.hostname, self.destination.app_name
            )
            for r in rendered
        ]

    def send(self, records: list[bytes]) -> None:
        if not records:
            return
        messages = self._messages(render_lines(records, self.destination.format, self.name))
        if self.destination.protocol == "udp":
            self._send_udp(messages)
            return
        frames = b"".join(b"%d %s" % (len(m), m) for m in messages)
        now = time.monotonic()
        self._check_connection(now)
        resend = b""
        if self._sock is None:
            # A new connection: what the old one carried lately may never have been read.
            resend = b"".join(entry.data for entry in self._in_doubt)
            self._sock = self._connect()
        try:
            self._sock.sendall(resend + frames)
            self._wait_acknowledged(self._sock)
        except (OSError, ssl.SSLError) as exc:
            self._drop()
            raise ExporterError(
                f"{self._where}: sending to {self.host}:{self.port} failed: {exc}", retryable=True
            ) from exc
        for entry in self._in_doubt:
            entry.sent_at = now
        self._in_doubt.append(_InDoubt(now, now, frames))

    def _check_connection(self, now: float) -> None:
        """Drop a connection the server closed; otherwise, settle what it has had
        IN_DOUBT_SECS to read."""
        if self._sock is None:
            return
        if self._peer_closed(self._sock):
            self._drop()
        else:
            self._in_doubt = [e for e in self._in_doubt if now - e.sent_at < IN_DOUBT_SECS]

    def unsettled_since(self) -> float | None:
        """When the oldest data still in doubt was first sent (None: nothing in doubt);
        the runner saves its cursor only past what was sent before that."""
        if self.destination.protocol == "udp":
            return None
        self._check_connection(time.monotonic())
        return self._in_doubt[0].first_sent if self._in_doubt else None

    def _send_udp(self, messages: list[bytes]) -> None:
        too_large = [i for i, m in enumerate(messages) if len(m) > MAX_UDP_MESSAGE]
        if self._sock is None:
            self._sock = self._connect()
        try:
            for index, message in enumerate(messages):
                if index not in too_large:
                    self._sock.send(message)
        except OSError as exc:
            self._drop()
            raise ExporterError(
                f"{self._where}: sending to {self.host}:{self.port} failed: {exc}", retryable=True
            ) from exc
        if too_large:
            raise RecordsRejectedError(
                f"{self._where}: {len(too_large)} messages are over the {MAX_UDP_MESSAGE} bytes "
                "a UDP datagram holds (use protocol tcp or tls for large events)",
                too_large,
            )

    def _connect(self) -> socket.socket:
        timeout = self.destination.timeout_secs
        try:
            if self.destination.protocol == "udp":
                family, kind, proto, _, address = socket.getaddrinfo(
                    self.host, self.port, type=socket.SOCK_DGRAM
                )[0]
                sock = socket.socket(family, kind, proto)
                sock.connect(address)
                return sock
            plain = socket.create_connection((self.host, self.port), timeout=timeout)
        except OSError as exc:
            raise ExporterError(
                f"{self._where}: cannot connect to {self.host}:{self.port}: {exc}", retryable=True
            ) from exc
        plain.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.destination.protocol != "tls":
            return plain
        try:
            return self._tls_context().wrap_socket(
                plain, server_hostname=self.destination.tls.server_name or self.host
            )
        except (OSError, ssl.SSLError) as exc:
            plain.close()
            raise ExporterError(
                f"{self._where}: TLS handshake with {self.host}:{self.port} failed: {exc}",
                retryable=True,
            ) from exc

    def _tls_context(self) -> ssl.SSLContext:
        tls = self.destination.tls
        try:
            context = ssl.create_default_context(cafile=tls.ca_file)
            if not tls.verify:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            if tls.cert_file:
                if tls.key_file:
                    check_private_key(tls.key_file, "TLS key (tls.key_file)")
                context.load_cert_chain(tls.cert_file, tls.key_file)
        except UnprotectedKeyError as exc:
            raise ExporterError(f"{self._where}: {exc}", retryable=False) from exc
        except (OSError, ssl.SSLError) as exc:
            raise ExporterError(
                f"{self._where}: cannot load the TLS files (ca_file, cert_file, key_file): {exc}",
                retryable=True,
            ) from exc
        return context

    def _peer_closed(self, sock: socket.socket) -> bool:
        """Whether the server closed the connection: a syslog server sends no data, so a
        readable socket means end of stream (or, with TLS, close_notify; TLS 1.3 session
        tickets also make it readable, and are consumed here without meaning a close)."""
        try:
            readable, _, _ = select.select([sock], [], [], 0)
            if not readable:
                return False
            if not isinstance(sock, ssl.SSLSocket):
                return sock.recv(1, socket.MSG_PEEK) == b""
            sock.setblocking(False)
            try:
                return sock.recv(1) == b""
            except ssl.SSLWantReadError:
                return False
            finally:
                sock.settimeout(self.destination.timeout_secs)
        except (OSError, ssl.SSLError):
            return True

    def _wait_acknowledged(self, sock: socket.socket) -> None:
        """Wait until the server's kernel acknowledged every byte sent (Linux SIOCOUTQ)."""
        deadline = time.monotonic() + self.destination.timeout_secs
        buf = bytearray(4)
        while True:
            fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, buf)
            (unacked,) = struct.unpack("i", buf)
            if unacked == 0:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{unacked} bytes not acknowledged within {self.destination.timeout_secs:g} s"
                )
            time.sleep(0.002)

    def _drop(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    def close(self) -> None:
        self._drop()
