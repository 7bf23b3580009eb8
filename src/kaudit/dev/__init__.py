"""Developer tooling: a real local Apache Kafka for the demo and the tests.

- `kaudit.dev.dist`: Kafka's jars from Maven Central, cached per version; its Java tools.
- `kaudit.dev.kafka`: one KRaft broker with SASL users and ACLs (`LocalKafka`, `KafkaInfo`).
- `kaudit.dev.probe`: the readiness probe (a MetadataRequest on the wire).

Its command line, ``kaudit local-kafka start|stop|status``, is `kaudit.cli.local_kafka`.
"""
