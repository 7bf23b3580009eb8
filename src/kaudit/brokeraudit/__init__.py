"""The broker auditor's side in kaudit: a source beside the gateway and the console.

kaudit's broker plugin (``broker-auditor/``, Java, inside each broker and controller)
sends every authorization decision it keeps to a decision topic. Here:

- `kaudit.brokeraudit.decisions`: those records, and the audit events they become
  (``context.source: broker``; ``action.result: unknown`` for what was allowed).
- `kaudit.brokeraudit.reader`: `DecisionReader`, which follows the decision topic with a
  consumer group and records the events through the recorder.
- `kaudit.brokeraudit.bypass`: `BypassDetector`, which reads the audit log behind its own
  cursor and records ``access.bypassed_gateway`` for client requests the broker
  authorized that no gateway recorded.
- `kaudit.brokeraudit.counts`: matching the broker's produce/fetch counts with the
  gateway's, by client and by magnitude.
- `kaudit.brokeraudit.evidence`: which gateway events are trusted as evidence (intact
  lines of a writer stream).
- `kaudit.brokeraudit.logsources`: where it reads the log, the local segments or the Kafka
  log topic, each with its durable cursor.
- `kaudit.brokeraudit.service`: both run together from the ``broker_auditor:`` section.
"""

from kaudit.brokeraudit.bypass import BypassDetector
from kaudit.brokeraudit.decisions import parse, to_events
from kaudit.brokeraudit.reader import DecisionReader

__all__ = ["BypassDetector", "DecisionReader", "parse", "to_events"]
