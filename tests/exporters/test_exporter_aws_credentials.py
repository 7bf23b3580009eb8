"""Wrong credentials against a moto server that checks them (moto's IAM authentication,
on after the first few unauthenticated calls that create the user): a clear, retryable
error naming the destination and the cause; the right keys deliver."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from kaudit_destination_helpers import ONE_EVENT_LINE, emit_events, log_events, make_config
from kaudit_destination_servers import MotoServer

from kaudit.config.model import CloudWatchDestination, S3Destination
from kaudit.errors import ExporterError
from kaudit.exporters.cloudwatch import CloudWatchExporter
from kaudit.exporters.s3 import S3Exporter

ALLOW_ALL = orjson.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
).decode()


@pytest.fixture(scope="module")
def checking_moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[MotoServer, Any]]:
    """A moto server checking credentials, and the access key of a user allowed all."""
    server = MotoServer(
        tmp_path_factory.mktemp("moto-auth") / "moto.log", env={"INITIAL_NO_AUTH_ACTION_COUNT": "4"}
    )
    try:
        iam = server.client("iam")
        iam.create_user(UserName="auditor")
        iam.put_user_policy(UserName="auditor", PolicyName="all", PolicyDocument=ALLOW_ALL)
        key = iam.create_access_key(UserName="auditor")["AccessKey"]
        server.client("s3", key["AccessKeyId"], key["SecretAccessKey"]).create_bucket(
            Bucket="audit-logs"
        )
        yield server, key
    finally:
        server.stop()


def _settings(server: MotoServer, key_id: str, secret: str) -> dict[str, Any]:
    return {
        "endpoint_url": server.url,
        "region": "us-east-1",
        "access_key_id": key_id,
        "secret_access_key": secret,
    }


def test_s3_with_wrong_keys_names_the_cause_and_right_keys_deliver(
    tmp_path: Path, checking_moto: tuple[MotoServer, Any]
) -> None:
    server, key = checking_moto
    config = make_config(tmp_path)
    emit_events(config, ["topic.created"] * 3)
    records = [orjson.dumps(e) for e in log_events(config)]
    wrong = S3Destination.model_validate(
        {"type": "s3", "bucket": "audit-logs", **_settings(server, "AKIAWRONGWRONG00", "nope")}
    )
    with pytest.raises(ExporterError) as caught:
        S3Exporter(wrong, config).send(records)
    assert caught.value.retryable
    message = str(caught.value)
    assert message.startswith("s3 destination s3:s3://audit-logs/ (bucket audit-logs)")
    assert "403: access denied: the credentials are wrong" in message

    right = wrong.model_copy(
        update={"access_key_id": key["AccessKeyId"], "secret_access_key": key["SecretAccessKey"]}
    )
    exporter = S3Exporter(right, config)
    exporter.send(records)
    assert exporter.objects_written == 1


def test_cloudwatch_with_wrong_keys_names_the_cause(
    checking_moto: tuple[MotoServer, Any],
) -> None:
    server, _ = checking_moto
    destination = CloudWatchDestination.model_validate(
        {"type": "cloudwatch", "log_group": "/a", **_settings(server, "AKIAWRONGWRONG00", "x")}
    )
    with pytest.raises(ExporterError) as caught:
        CloudWatchExporter(destination).send([ONE_EVENT_LINE])
    assert caught.value.retryable
    assert "cloudwatch destination" in str(caught.value)
    assert "wrong or expired credentials" in str(caught.value)
