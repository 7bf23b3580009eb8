"""Tamper evidence for the audit log.

The package owns everything that lets a reader tell whether the log was changed:

- `chain`: the OSO seed's HMAC-SHA256 chain (needs the secret key to check);
- `merkle`: RFC 6962 / RFC 9162 tree hashing, the writer's incremental tree, and
  inclusion and consistency proofs;
- `keys`: Ed25519 key files, signers and verifiers with C2SP signed-note key ids;
- `checkpoint`: signed tree heads in the C2SP tlog-checkpoint / signed-note format,
  which anyone holding only a public key can check.

Nothing is re-exported here on purpose: importing the HMAC chain must not pull in
`cryptography`, and each caller imports the one module it needs.
"""
