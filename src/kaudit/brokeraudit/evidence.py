"""Which gateway events the bypass detector trusts as proof that a request went through a
gateway.

A line saying ``context.source: gateway`` cancels a bypass, and anyone allowed to write
to the audit log topic can write one. So a gateway event is evidence only when it is an
intact line of a writer stream, checked with the code `kaudit verify` uses:

- it comes from a writer stream: on a Kafka log its record carries the stream header
  (`STREAM_HEADER`); the local log is one writer's own file;
- its integrity sequence number is readable (`seq_of`), later than the last one of its
  stream read in the same lane (a Kafka partition holds a stream's records in the order
  they were sealed; the local log is one lane), and not read before: a copy of a line
  already read, at-least-once or replayed, proves nothing more;
- with the HMAC key (``audit.integrity.signing``), its signature verifies
  (`verify_signature`), and where the stream's line before it was read, its
  ``previous_signature`` is that line's signature (the chain, when chaining is on).

Without the HMAC key only the first two hold, and a writer to the topic who copies the
stream header and picks a later sequence number is trusted: configure signing where the
topic is writable by others. Whatever fails is no evidence: counted by reason (`rejected`)
and logged, and the detector records it as ``audit.degraded``.
"""

from __future__ import annotations

import logging
from collections import Counter, OrderedDict

from kaudit.integrity.chain import split_sealed, verify_signature
from kaudit.integrity.verify.lines import seq_of

log = logging.getLogger("kaudit.brokeraudit")

DUPLICATE = "a line already read"
"""A line read again (at-least-once delivery): no evidence, and no sign of tampering."""
# Lines remembered per stream. A copy of an older line is refused anyway: its sequence
# number is below the last one read in its lane.
_REMEMBERED = 20_000


class GatewayEvidence:
    """Judges each line of the log; `admit` says whether a gateway event may be trusted."""

    def __init__(self, hmac_key: bytes | None) -> None:
        self.hmac_key = hmac_key
        self._last_in_lane: dict[tuple[str, object], int] = {}
        # Per stream, each line read by sequence number: a hash of its bytes (to tell a
        # copy from another line) and its signature (the next line's link).
        self._seen: dict[str, OrderedDict[int, tuple[int, str | None]]] = {}
        self.rejected: Counter[str] = Counter()

    def note(self, line: bytes, stream: str | None, lane: object) -> str | None:
        """Take any line of the log in (its sequence number and signature are what the
        next lines of its stream are checked against), once its signature verifies when
        there is a key: a line of any source that does not verify changes nothing, so a
        forged one cannot push the writer's own lines out of order. Returns why the line is
        no evidence (`DUPLICATE` for a copy of a line already read), None when it is."""
        if stream is None:
            return "no writer stream header"
        body = line.rstrip(b"\n")
        seq = seq_of(body)
        if seq is None:
            return "no readable sequence number"
        try:
            _, signature, previous = split_sealed(body)
        except ValueError:
            return "no integrity fields"
        mark = hash(body)
        seen = self._seen.setdefault(stream, OrderedDict())
        if seq in seen:
            return DUPLICATE if seen[seq][0] == mark else "a second line for a sequence number"
        last = self._last_in_lane.get((stream, lane))
        if last is not None and seq < last:
            return "a sequence number out of order"
        why = None
        if self.hmac_key is not None:
            if signature is None:
                why = "not signed"
            elif not verify_signature(self.hmac_key, body):
                why = "a signature that does not verify"
            elif previous is not None and seen.get(seq - 1, (0, previous))[1] != previous:
                why = "a previous_signature that is not the line before's"
        if why is None:
            self._last_in_lane[(stream, lane)] = seq
            seen[seq] = (mark, signature)
            if len(seen) > _REMEMBERED:
                seen.popitem(last=False)
        return why

    def reject(self, why: str, where: object) -> None:
        """Count a gateway event that is no evidence; log the first of each kind."""
        self.rejected[why] += 1
        if self.rejected[why] == 1:
            log.warning(
                "bypass detection: a gateway event at %s is not trusted as evidence (%s); "
                "further ones of this kind are only counted",
                where, why,
            )  # fmt: skip
