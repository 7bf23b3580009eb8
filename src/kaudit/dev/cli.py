"""`kaudit local-kafka`: placeholder replaced by the local Kafka work in progress."""

import click


@click.group("local-kafka")
def local_kafka() -> None:
    """Run a local Apache Kafka (KRaft, SASL, ACLs) for the demo and the tests."""
