"""A request declaring more than it holds cannot take the gateway down: a real `kaudit
gateway` process in front of the run's real broker (a separate process, so a regression
fails this test instead of aborting the test run)."""

from __future__ import annotations

import contextlib
import signal
import socket
import struct
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from confluent_kafka.admin import AdminClient

from kaudit.dev.kafka import KafkaInfo
from kaudit.dev.ports import free_port_block
from kaudit.gateway.codec import decode_response
from kaudit.log.segments import LogReader
from support.wire import recv_exactly, wait_for_port

pytestmark = pytest.mark.kafka
KAUDIT = str(Path(sys.executable).with_name("kaudit"))
DELETE_RECORDS = 21


def test_a_delete_records_request_declaring_billions_of_topics_leaves_the_gateway_serving(
    kafka: KafkaInfo, tmp_path: Path
) -> None:
    port = free_port_block(4)
    config = tmp_path / "kaudit.yaml"
    config.write_text(
        f"data_dir: {tmp_path / 'data'}\n"
        "gateway:\n"
        f"  upstream: {kafka.bootstrap_servers}\n"  # PLAINTEXT: no login first
        f"  listen: 127.0.0.1:{port}\n"
    )
    proc = subprocess.Popen([KAUDIT, "gateway", "-c", str(config)], stderr=subprocess.PIPE)
    try:
        wait_for_port(port, proc)
        # DeleteRecords v2 whose topics array declares 2**35 - 2 items, in 40 bytes: kio's
        # reader would reserve 256 GiB for it and abort the process.
        request = (
            struct.pack(">hhih", DELETE_RECORDS, 2, 1, 4)
            + b"evil"
            + b"\0"  # no tagged fields in the header
            + b"\xff\xff\xff\xff\x7f"
            + bytes(16)
        )
        with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
            conn.sendall(struct.pack(">i", len(request)) + request)
            # Refused, not forwarded, as any state-changing request the gateway cannot
            # read: the client gets DeleteRecords' own error (INVALID_REQUEST).
            size = struct.unpack(">i", recv_exactly(conn, 4))[0]
            _, answer = decode_response(DELETE_RECORDS, 2, recv_exactly(conn, size))
            assert [int(t.partitions[0].error_code) for t in answer.topics] == [42]
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=1)  # time for a dying process to be seen dead
        if proc.poll() is not None:
            died = proc.stderr.read().decode(errors="replace")[:300] if proc.stderr else ""
            raise AssertionError(f"the gateway died (exit status {proc.returncode}): {died}")
        # Everyone else carries on through the same gateway.
        admin = AdminClient({**kafka.client_config(), "bootstrap.servers": f"127.0.0.1:{port}"})
        metadata = admin.list_topics(timeout=30)
        assert metadata.brokers and all(b.port > port for b in metadata.brokers.values())
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err.decode()
    # The refused request is on the record, as one the gateway could not decode, and why.
    reader = LogReader(tmp_path / "data" / "log")
    lines, _ = reader.read(reader.start())
    events = [orjson.loads(line) for line in lines]
    [event] = [e for e in events if e["context"]["api"]["key"] == DELETE_RECORDS]
    assert event["actor"]["client_id"] == "evil"
    assert event["details"]["decoded"] is False
    assert event["details"]["refused"] is True
    assert event["details"]["reason"].startswith("DeleteRecords v2 request")
