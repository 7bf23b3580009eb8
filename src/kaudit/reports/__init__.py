"""Reports drawn from the audit log: the monthly compliance report (`compliance`)."""
