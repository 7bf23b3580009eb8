"""Developer tooling: a real local Apache Kafka for the demo and the tests.

One KRaft node with SASL users and ACLs, assembled from Maven Central and run in a
directory of its own. It is used by ``kaudit local-kafka``, ``kaudit demo``, the tests
and the benchmarks; from the rest of kaudit it may import `kaudit.errors` only (nothing
of kaudit imports it but the CLI and the demo).

- `kaudit.dev.kafka`: the broker's life cycle (`LocalKafka`: start, status, stop) and the
  names its users need (`KafkaInfo`, `run_kafka_tool`, ...), handed on from below.
- `kaudit.dev.info`: a broker's connection details (`KafkaInfo`, `KafkaPorts`).
- `kaudit.dev.users`: the SASL users and how a client logs in as one of them.
- `kaudit.dev.broker_config`: ``server.properties``, log4j2, KRaft storage formatting.
- `kaudit.dev.process`: the broker's JVM: started detached, recognised, terminated.
- `kaudit.dev.dist`: Kafka's jars from Maven Central, cached per version; its Java tools.
- `kaudit.dev.broker_auditor`: kaudit's broker auditor plugin (``broker-auditor/``),
  built with Maven once per version of its sources, and what a broker running it gets.
- `kaudit.dev.files`: a cached Kafka's layout (`KafkaDist`), atomic writes, file locks.
- `kaudit.dev.probe`: the readiness probe (a MetadataRequest on the wire).
- `kaudit.dev.ports`: free loopback ports.
- `kaudit.dev.errors`: the errors, under `kaudit.errors.LocalKafkaError`.

Its command line, ``kaudit local-kafka start|stop|status``, is `kaudit.cli.local_kafka`.
"""
