"""Setup the tests share, importable from every test directory as ``support``.

- `support.wire`: raw frames over a socket (`recv_exactly`) for requests no client
  library would send, and waiting until a process listens on a port.
- `support.kafka`: what tests against the real broker do before and after the part they
  test — topics, ACLs, users, kaudit's settings for a harness user, reading a topic
  back, waiting until the broker's state has caught up.
- `support.clients`: the Go (franz-go) and Node (kafkajs) test clients of
  ``tests/clients``, built from source once and cached.

The broker itself and the fixtures over it (`kafka`, `admin_config`, `sasl_config`,
`kafka_tool`, ...) are in ``tests/integration/conftest.py``; starting or reusing a
broker is `kaudit.dev.kafka.ready_broker` / `started_broker`, which the benchmarks use
too.
"""
