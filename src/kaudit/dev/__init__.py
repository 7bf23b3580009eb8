"""Developer tooling: a real local Apache Kafka for the demo and the tests."""
