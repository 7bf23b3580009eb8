"""The recorder: the one door into the audit log.

It selects events by type, redacts secrets, adds cluster and environment context, and
behind a bounded in-memory queue a single writer per log stream assigns sequence numbers,
has the integrity step seal each line and appends batches to the log. `core.Recorder` is
its public face; `auditor.RecorderAuditor` is the recorder as a KIP-567 auditor.

It may import kaudit.events, kaudit.config, kaudit.errors, kaudit.log, kaudit.integrity,
kaudit.retry and the auditor protocol (kaudit.auditor), and nothing that reads the log or
feeds it (sources, exporters, store, alerts, reports, cli). The log and the integrity step
reach it through the protocols in `protocols`, not by import.
"""
