"""Verifying an audit log: does it hold exactly what its writer sealed, and all of it?

This package owns the verifier: one streaming pass over a log (a local log directory,
one JSON Lines export, the objects of a copy, a Kafka writer stream) that checks the
signed Merkle checkpoints with only the public key and, given the secret, the HMAC
chain of every event, and reports every finding with its sequence numbers and kind,
and the time range it covered against the one asked for (as CloudTrail's
``validate-logs`` does).

How it checks, in one pass and O(log n + checkpoint interval) memory:

- All checkpoint files are read first, with any external anchor file (a deleted
  segment's later checkpoints still tell how many events there were). Every note must
  verify with a given public key; the trusted ones give tree sizes at which the log's
  Merkle root is compared.
- Each event line's leaf hash (RFC 6962 over the line's bytes without the newline)
  goes into the tree in sequence order; at every trusted tree size the roots must be
  equal. Between two such sizes the leaves are kept, so events that are swapped or
  duplicated are put in sequence order (or each copy tried) before the comparison,
  and a mismatch narrows a change down to that interval.
- After a mismatch or a gap the tree resumes from the frontier stored with the
  checkpoint, once the frontier is shown to fold to the signed root, so one change
  does not hide the rest of the log.
- Sequence numbers are read without decoding JSON (the integrity object is the last
  field of a canonical line) and classify what was done: missing, inserted,
  reordered, modified.
- With the HMAC key every event's signature and its link to the previous one are
  checked, which pins a modification to one sequence number.
- A trusted checkpoint larger than the log, or checkpoints that stop before their
  heartbeat promised the next one (and no ``closed`` line), show a cut-off tail.

What it cannot see from the log directory alone: a log cut back to an earlier clean
close, or to within a heartbeat of the newest checkpoint left, together with the
checkpoints after that point, looks like a shorter, intact log. Checkpoints kept
elsewhere (`anchors`, a witness) show that.

Kinds of finding, and what detects them: `modified` (a root mismatch between two
checkpoints, an HMAC that does not verify, a line whose sequence number or integrity
fields were changed); `missing` (a gap in sequence numbers, a whole segment when the
gap starts a segment); `inserted` (a second line for one sequence number, resolved by
the checkpoint or the HMAC, a line that is no event, events after a `closed`
checkpoint that nothing covers); `reordered` (a sequence number that comes late or
early); `truncated` (a trusted checkpoint beyond the log's end, or checkpoints that
stop before their heartbeat); `bad_signature` (a checkpoint note that does not verify
with a given key, events without an HMAC signature, or an HMAC key that verifies no
event); `unknown_key` (checkpoints signed only by keys not given); `chain_broken` (a
previous_signature link that no other finding explains); `unreadable` (a file or a
checkpoint record that cannot be read); `no_checkpoint` (nothing signed by a given key).

The package, one module a job: `findings` (what is reported), `checkpoints` (loading
and trusting them), `lines` (reading sealed lines fast), `tally`, `intervals` and
`walk` (the one walker, in three layers), `report` (building the report) and `sources`
(the entry points: a log directory, a JSON Lines export, a log kept as parts). The
Kafka log's streams are verified through `verify_parts` by `kafka` (imported on its
own: it needs the Kafka client).
"""

from __future__ import annotations

from kaudit.integrity.verify.checkpoints import CheckpointRecords
from kaudit.integrity.verify.findings import (
    Coverage,
    Finding,
    FindingKind,
    TimeRange,
    VerifyReport,
    VerifyUsageError,
)
from kaudit.integrity.verify.lines import sequence_of
from kaudit.integrity.verify.parts import LogPart, verify_parts
from kaudit.integrity.verify.sources import verify_jsonl, verify_log

__all__ = [
    "CheckpointRecords",
    "Coverage",
    "Finding",
    "FindingKind",
    "LogPart",
    "TimeRange",
    "VerifyReport",
    "VerifyUsageError",
    "sequence_of",
    "verify_jsonl",
    "verify_log",
    "verify_parts",
]
