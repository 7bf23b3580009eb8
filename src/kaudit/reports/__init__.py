"""Reports drawn from the audit log: the monthly compliance report (`compliance`), its
figures taken from a `kaudit.store` search and its integrity section from
`kaudit.integrity`'s verifier; and `kaudit verify` / `kaudit prove` as library calls
(`verify`), over a log directory, a JSON Lines export, a Kafka log or an S3 export.

Reports may import `kaudit.store`, `kaudit.exporters` (the S3 export's reader),
`kaudit.log`, `kaudit.integrity`, `kaudit.events`, `kaudit.config`, `kaudit.errors` and
`kaudit.retry`; never the sources (gateway, console), the session, the recorder or the
CLI.
"""
