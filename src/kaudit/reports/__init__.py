"""Reports drawn from the audit log: the monthly compliance report (`compliance`), its
figures taken from a `kaudit.store` search and its integrity section from
`kaudit.integrity`'s verifier.

Reports may import `kaudit.store`, `kaudit.log`, `kaudit.integrity`, `kaudit.events`,
`kaudit.config`, `kaudit.errors` and `kaudit.retry`; never the sources (gateway,
console), the session, the recorder or the CLI.
"""
