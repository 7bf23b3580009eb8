"""Fixtures for destination tests: the real servers of kaudit_destination_servers."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

# The sealed-log helpers the integrity tests use (tests/integrity/kaudit_sealed.py).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "integrity"))

import pytest
from kaudit_destination_servers import HttpReceiver, MotoServer, Rsyslog


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    server = MotoServer(tmp_path_factory.mktemp("moto") / "moto.log")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def moto(moto_server: MotoServer) -> Iterator[MotoServer]:
    """The moto server, emptied before the test and running after it."""
    moto_server.reset()
    try:
        yield moto_server
    finally:
        moto_server.resume()


@pytest.fixture
def rsyslog(tmp_path: Path) -> Iterator[Rsyslog]:
    server = Rsyslog(tmp_path / "rsyslog")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def receiver() -> Iterator[HttpReceiver]:
    server = HttpReceiver()
    server.start()
    try:
        yield server
    finally:
        server.stop()
