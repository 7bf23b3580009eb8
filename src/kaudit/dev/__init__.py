"""Developer tooling: a real local Apache Kafka for the demo and the tests.

- `kaudit.dev.dist`: Kafka's jars from Maven Central, cached per version; its Java tools.
- `kaudit.dev.kafka`: one KRaft broker with SASL users and ACLs (`LocalKafka`, `KafkaInfo`).
- `kaudit.dev.probe`: the readiness probe (a MetadataRequest on the wire).
- `kaudit.dev.cli`: ``kaudit local-kafka start|stop|status``.
"""
