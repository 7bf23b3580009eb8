"""AWS clients for the S3 and CloudWatch Logs destinations, and the one place botocore's
exceptions become `ExporterError`s that name the destination, the cause and whether a
retry can help."""

from __future__ import annotations

import re
from typing import Any

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionError,
    HTTPClientError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
)

from kaudit.config.model import AwsAccess
from kaudit.config.secrets import reveal
from kaudit.errors import ExporterError

# A region is required to sign requests; S3 and an endpoint_url work with any.
_DEFAULT_REGION = "us-east-1"

# Codes meaning the content was refused: sending it again cannot succeed.
_REFUSED_CONTENT = frozenset(
    {
        "InvalidArgument",
        "InvalidParameterException",
        "EntityTooLarge",
        "InvalidDigest",
        "BadDigest",
        "MalformedXML",
        "InvalidRequest",
    }
)

_CREDENTIALS = frozenset(
    {
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "ExpiredToken",
        "ExpiredTokenException",
        "InvalidToken",
        "AuthFailure",
    }
)


def make_client(service: str, access: AwsAccess) -> Any:
    """A boto3 client for `service` with short timeouts and no retries of its own: the
    runner's backoff does the long waiting, with the cursor held."""
    session = boto3.session.Session(
        aws_access_key_id=access.access_key_id,
        aws_secret_access_key=reveal(access.secret_access_key),
        aws_session_token=reveal(access.session_token),
        region_name=access.region,
    )
    config = BotoConfig(
        connect_timeout=min(access.timeout_secs, 10.0),
        read_timeout=access.timeout_secs,
        retries={"max_attempts": 1, "mode": "standard"},
    )
    region = access.region or session.region_name or _DEFAULT_REGION
    # Typed per service by the stubs; this helper serves two services, so it is untyped.
    client_for: Any = session.client
    return client_for(service, region_name=region, endpoint_url=access.endpoint_url, config=config)


def error_code(exc: BaseException) -> str:
    """The AWS error code of a ClientError ("" for other errors)."""
    if not isinstance(exc, ClientError):
        return ""
    return str(exc.response.get("Error", {}).get("Code", ""))


def http_status(exc: BaseException) -> int | None:
    """The HTTP status of a ClientError's answer (None for other errors)."""
    if not isinstance(exc, ClientError):
        return None
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return int(status) if status is not None else None


def aws_error(where: str, doing: str, exc: Exception) -> ExporterError:
    """`exc` from boto3 while `doing` something, as an ExporterError for `where`."""
    if isinstance(exc, ClientError):
        code = error_code(exc)
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        message = exc.response.get("Error", {}).get("Message") or str(exc)
        if not code or code.isdigit():
            # An answer in a protocol other than the service's (an XML error from a JSON
            # API, as proxies and some emulators give) leaves botocore with only the status.
            code, message = _embedded_error(message, code)
        if code in _CREDENTIALS:
            hint = "wrong or expired credentials (check access_key_id / secret_access_key)"
            return ExporterError(f"{where}: {doing}: {code}: {hint}: {message}", retryable=True)
        if code in ("AccessDenied", "AccessDeniedException", "Forbidden"):
            hint = "the credentials are not allowed to do this (check the IAM policy)"
            return ExporterError(f"{where}: {doing}: {code}: {hint}", retryable=True)
        if status == 403:
            # A HEAD request's answer has no body to tell the two causes apart.
            hint = (
                "access denied: the credentials are wrong or not allowed to do this (check "
                "access_key_id / secret_access_key and the IAM policy)"
            )
            return ExporterError(f"{where}: {doing}: 403: {hint}", retryable=True)
        retryable = code not in _REFUSED_CONTENT
        return ExporterError(f"{where}: {doing}: {code or status}: {message}", retryable=retryable)
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return ExporterError(
            f"{where}: {doing}: no AWS credentials: set access_key_id and secret_access_key, "
            "or provide them in the environment (AWS_ACCESS_KEY_ID, a profile, a role)",
            retryable=True,
        )
    if isinstance(exc, NoRegionError):
        return ExporterError(f"{where}: {doing}: no region: set region", retryable=True)
    if isinstance(exc, ConnectionError | HTTPClientError):
        return ExporterError(f"{where}: {doing}: cannot reach the endpoint: {exc}", retryable=True)
    if isinstance(exc, BotoCoreError):
        return ExporterError(f"{where}: {doing}: {exc}", retryable=True)
    raise TypeError(f"not a boto3 error: {exc!r}")


AWS_ERRORS = (ClientError, BotoCoreError)

_XML_CODE = re.compile(r"<Code>([^<]+)</Code>")
_XML_MESSAGE = re.compile(r"<Message>([^<]*)</Message>")


def _embedded_error(message: str, code: str) -> tuple[str, str]:
    """(code, message) read from an XML error document botocore passed on as the message."""
    found_code = _XML_CODE.search(message)
    if found_code is None:
        return code, message
    found_message = _XML_MESSAGE.search(message)
    return found_code.group(1), found_message.group(1) if found_message else ""
