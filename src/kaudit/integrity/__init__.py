"""Tamper evidence for the audit log.

The package owns everything that lets a reader tell whether the log was changed, from
sealing it as it is written to checking it afterwards:

- `chain`: the OSO seed's HMAC-SHA256 chain (needs the secret key to check);
- `merkle`: RFC 6962 / RFC 9162 tree hashing, the writer's incremental tree, and
  inclusion and consistency proofs;
- `keys`: Ed25519 key files, signers and verifiers with C2SP signed-note key ids;
- `checkpoint`: signed tree heads in the C2SP tlog-checkpoint / signed-note format,
  which anyone holding only a public key can check;
- the writer's side: `sealer` (what the writer applies), `checkpointer`, `follower`
  (the checkpoint process of a local log), `store` (checkpoint files beside the log),
  `kafka_checkpoints` (a Kafka log's checkpoints on its companion topic);
- the reader's side: `verify` (the verifier of a log directory, an export, a log kept
  as parts, a Kafka log), `proof` and `kafka_proof` (proofs a third party checks with
  the public key), `kafka_streams` (a Kafka log read back by writer stream).

Integrity sits beside the log, below the recorder: it may import `kaudit.events`,
`kaudit.config`, `kaudit.errors` and `kaudit.log`, and nothing that reads the log for
someone else (exporters, store, reports) or writes to it (recorder, session, sources,
cli). What needs an exporter, such as verifying the S3 copy, lives with the exporters.

Nothing is re-exported here on purpose: importing the HMAC chain must not pull in
`cryptography`, and each caller imports the one module it needs.
"""
