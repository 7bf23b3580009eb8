"""The answering side of a client connection: each broker response matched to its request,
rewritten, audited, and sent on, or held until its audit is durable.

Each response is matched to the head of the connection's FIFO of `Pending` requests,
rewritten if it carries broker addresses or API versions, audited (one call per request,
KIP-567, see auditing), and sent on. Under fail_closed a response waits, in order, until
its records and counts are durable (recording; a large fetch response is cut through but
for its last byte); a read's answer that cannot be made durable becomes the API's own
error instead. Refused requests right behind an answer are answered next (refusal). A
login seen in an answer lifts the connection's frame bound to the one after login.

`Answering` is a mixin of `connection.ClientConnection`: its methods are the
connection's own, so a response costs no extra call on the way.

Everything here runs on the event loop; nothing blocks or awaits on the response path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from collections import deque
from typing import TYPE_CHECKING, Any

from kaudit.auditor import RequestContext
from kaudit.errors import AuditRefused
from kaudit.gateway import rewrite
from kaudit.gateway.auditing import audit_exchange, audit_sasl_answer
from kaudit.gateway.codec import (
    API_VERSIONS,
    DESCRIBE_CLUSTER,
    FETCH,
    FIND_COORDINATOR,
    METADATA,
    PRODUCE,
    SASL_AUTHENTICATE,
    SASL_HANDSHAKE,
    FrameDecodeError,
    decode_response_noting,
    encode_response,
)
from kaudit.gateway.exchange import Held, Pending, error_answer
from kaudit.gateway.fetch import MAX_VERSION as FETCH_SUMMARY_MAX
from kaudit.gateway.fetch import summarize_fetch_response
from kaudit.gateway.framing import Chunk, Frames, ProtocolViolation
from kaudit.gateway.metadata import asks_all_topics, patch_metadata
from kaudit.gateway.produce import MAX_VERSION as PRODUCE_MAX
from kaudit.gateway.produce import MIN_VERSION as PRODUCE_MIN
from kaudit.gateway.produce import ProduceResult, summarize_produce_response
from kaudit.gateway.recording import Recording
from kaudit.gateway.refusal import answer_refused
from kaudit.gateway.rewrite import NEVER_UNREAD
from kaudit.gateway.sasl import SaslObserver
from kaudit.gateway.shared import TOKEN_APIS, SharedState

log = logging.getLogger("kaudit.gateway")

_INT32 = struct.Struct(">i")
_BEFORE_LOGIN = frozenset({API_VERSIONS, SASL_HANDSHAKE, SASL_AUTHENTICATE})
"""What a broker answers before a client on a SASL listener has logged in."""


class Answering:
    """The response side of `ClientConnection`: matches, rewrites, audits, holds, answers."""

    # What it shares with the rest of the connection (set in ClientConnection.__init__).
    shared: SharedState
    recording: Recording
    transport: asyncio.Transport | None
    frames: Frames
    pending: deque[Pending]
    held: deque[Held]
    sasl: SaslObserver
    peer_host: str | None
    peer: str
    software: tuple[str | None, str | None]
    contexts: dict[tuple[Any, ...], RequestContext]
    fetch_session: dict[Any, set[int]]
    security_protocol: str
    raw_sasl: bool
    handshake_version: int
    closed: bool
    client_gone: bool
    to_client: list[Chunk] | None

    if TYPE_CHECKING:

        def close(self, reason: str, quiet: bool = False) -> None: ...

    def can_stream_next(self) -> bool:
        """Whether the next response may be cut through: a fetch response (the big ones;
        the gateway never rewrites them, see rewrite.offered_versions) with nothing held
        before it (under fail_closed its last byte is then held until its counts are durable)."""
        head = self.pending[0] if self.pending else None
        return (
            head is not None
            and head.api_key == FETCH
            and head.api_version <= FETCH_SUMMARY_MAX
            and not self.held
            and not self.client_gone
        )

    def on_response(
        self,
        frame: bytes,
        sent: bool = False,
        pieces: list[Chunk] | None = None,
        tail: bytes | None = None,
    ) -> None:
        """A whole response from the broker (`frame`, or the `pieces` it arrived in, the
        first starting with the header); `sent` when it was cut through already, but for
        `tail`, its last bytes, held until its audit is durable (fail_closed). Refused
        requests right behind it are answered next."""
        self._on_response(frame, sent, pieces, tail)
        if self.sasl.logins and self.frames.max_bytes != self.shared.max_frame_bytes:
            self._trust_frames()
        if self.pending and self.pending[0].refused:
            answer_refused(self)

    def _on_response(
        self, frame: bytes, sent: bool, pieces: list[Chunk] | None, tail: bytes | None
    ) -> None:
        if not self.pending:
            raise ProtocolViolation("response with no request outstanding")
        pending = self.pending.popleft()
        if pending.raw_sasl:
            self._raw_sasl_response(pending, frame)
            return
        correlation_id = _INT32.unpack_from(frame, 4)[0]
        if correlation_id != pending.correlation_id:
            raise ProtocolViolation(
                f"response correlation id {correlation_id}, expected {pending.correlation_id}"
            )
        shared = self.shared
        key = pending.api_key
        header: Any = None
        response: Any = None
        out = frame
        if self.frames.max_bytes != shared.max_frame_bytes and (
            key not in _BEFORE_LOGIN or self.sasl.logins
        ):
            # Logged in, or the broker answered a request that needs a login first.
            self._trust_frames()
        if key == FETCH and pending.decoded and pending.api_version <= FETCH_SUMMARY_MAX:
            # Fetch responses are summarised in place, records skipped, never re-encoded.
            try:
                response = summarize_fetch_response(pieces or [frame], pending.api_version)
            except FrameDecodeError as exc:
                log.debug("%s: fetch response not summarised: %s", self.peer, exc)
                pending.decoded = False
        elif (
            key == PRODUCE
            and pending.decoded
            and (response := self._produce_result(frame, pending.api_version))
        ):
            pass  # read in place: error codes only, nothing to rewrite
        elif (
            key == METADATA
            and pending.decoded
            and not shared.records_generic(key)
            and asks_all_topics(pending.request, pending.api_version)
        ):
            # Only the brokers change: patched in place, the partitions never read. An
            # answer for all topics holds no denial to find (the broker leaves out the
            # topics the client may not describe); one for named topics is decoded, so a
            # topic refused in it is recorded as access.denied.
            try:
                out = patch_metadata(frame, pending.api_version, shared.brokers)
            except FrameDecodeError as exc:
                shared.metrics.ended(key, "failed")
                self.close(f"cannot rewrite the broker addresses of a response: {exc}")
                return
            shared.topic_names.keep(frame, pending.api_version)
        elif pending.decoded and shared.decodes_response(key):
            try:
                header, response, unknown_tags = decode_response_noting(
                    key,
                    pending.api_version,
                    memoryview(frame)[4:],  # type: ignore[arg-type]
                )
            except FrameDecodeError as exc:
                if key in NEVER_UNREAD:
                    # Passing it on would send the client to the brokers directly, past
                    # the audit: refuse the connection instead.
                    with contextlib.suppress(AuditRefused):
                        audit_exchange(self, pending, None)
                    shared.metrics.ended(key, "failed")
                    self.close(f"cannot rewrite a response that must be rewritten: {exc}")
                    return
                log.debug("%s: forwarding undecoded response: %s", self.peer, exc)
                pending.decoded = False
            else:
                if unknown_tags:
                    pending.unknown_tags = tuple(sorted({*pending.unknown_tags, *unknown_tags}))
                if key in TOKEN_APIS and int(response.error_code) == 0:
                    shared.learn_token_owners(key, response)
                rewritten = None if sent else self._rewrite(key, response)
                if rewritten is not None:
                    response = rewritten
                    out = encode_response(key, pending.api_version, header, response)
        refused: str | None = None
        try:
            audited = audit_exchange(self, pending, response)
        except AuditRefused as exc:
            audited, refused = True, str(exc)
        if self.client_gone:
            shared.metrics.ended(key, "client_gone")
            if not self.pending:
                self.close("client went away; in-flight requests audited", quiet=True)
            return
        if sent:
            if tail is None:
                shared.metrics.answered[key] += 1
            else:  # nothing was held before it (can_stream_next)
                held = Held(tail, pending)
                self.held.append(held)
                if refused is not None:
                    self.durable(held, refused)
                else:
                    self.recording.when_durable(self, held)
            return
        if shared.fail_closed and (audited or self.held):
            held = Held(out, pending, response=response, header=header)
            self.held.append(held)
            if refused is not None or not audited:
                held.ready, held.failed = True, refused
                self.release_ready()
            else:
                self.recording.when_durable(self, held)
            return
        shared.metrics.answered[key] += 1
        self.send(out)

    def _produce_result(self, frame: bytes, version: int) -> ProduceResult | None:
        """A Produce response's error codes read in place; None when it must be decoded
        (it names new leaders, or is not one the fast reader knows)."""
        if not PRODUCE_MIN <= version <= PRODUCE_MAX:
            return None
        try:
            return summarize_produce_response(frame, version)
        except FrameDecodeError as exc:
            log.debug("%s: produce response not read in place: %s", self.peer, exc)
            return None

    def send(self, frame: Chunk) -> None:
        batch = self.to_client
        if batch is not None:  # written with the read's other responses (flush_writes)
            batch.append(frame)
            return
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(frame)

    def durable(self, held: Held, error: str | None) -> None:
        """The recorder's answer for a held response (on the event loop)."""
        held.ready = True
        held.failed = error
        self.release_ready()

    def release_ready(self) -> None:
        while self.held and self.held[0].ready:
            held = self.held.popleft()
            if held.failed is None:
                if not held.pending.refused:
                    self.shared.metrics.answered[held.pending.api_key] += 1
                self.send(held.frame)
                if held.pending.close_after:
                    self.close("refused a login the gateway cannot read")
                    return
                continue
            self.shared.metrics.refused += 1
            if not held.pending.refused:
                self.shared.metrics.ended(held.pending.api_key, "failed")
            log.error("%s: audit record not durable, answering with an error: %s",
                      self.peer, held.failed)  # fmt: skip
            answer = error_answer(held)
            if answer is None:
                self.close(f"audit record not durable ({held.failed}); cannot build an error")
                return
            self.send(answer)
            if held.pending.close_after:
                self.close("refused a login the gateway cannot read")
                return

    def _rewrite(self, key: int, response: Any) -> Any | None:
        brokers = self.shared.brokers
        if key == METADATA:
            self.shared.learn_topics(response)
            return rewrite.rewrite_metadata(response, brokers)
        if key == API_VERSIONS:
            if int(response.error_code) != 0:
                return None
            return rewrite.clamp_api_versions(response)
        if key == FIND_COORDINATOR:
            return rewrite.rewrite_find_coordinator(response, brokers)
        if key == DESCRIBE_CLUSTER:
            return rewrite.rewrite_describe_cluster(response, brokers)
        if key in (PRODUCE, FETCH):
            return rewrite.rewrite_node_endpoints(response, brokers)
        if (
            key == SASL_HANDSHAKE
            and int(response.error_code) == 0
            and self.sasl.mechanism
            and self.handshake_version == 0  # raw SASL tokens follow, without headers
        ):
            self.raw_sasl = True
        return None

    def _raw_sasl_response(self, pending: Pending, frame: bytes) -> None:
        """A raw v0 SASL token from the broker (which refuses by closing the connection,
        or for OAUTHBEARER with an error challenge first)."""
        try:
            audit_sasl_answer(self, pending, 0, bytes(frame[4:]))
        except AuditRefused as exc:
            self.close(f"audit log unavailable (fail_closed): {exc}")
            return
        if self.sasl.verdict == "accepted":
            self.raw_sasl = False
        self.shared.metrics.answered[pending.api_key] += 1
        self.send(frame)

    def _trust_frames(self) -> None:
        """Frames up to gateway.max_frame_bytes from now on: the client has logged in."""
        self.frames.max_bytes = self.shared.max_frame_bytes
        self.frames.limit_name = "gateway.max_frame_bytes"
