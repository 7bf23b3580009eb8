"""Reports drawn from the audit log: the monthly compliance report (`compliance`), and
`kaudit verify` / `kaudit prove` as library calls (`verify`)."""
