"""The Kafka side of the console's actions, one module per kind of object: each function
makes the Kafka calls for one action on one cluster and returns plain data. RBAC and
auditing sit in front of them, in `kaudit.console.service`."""
