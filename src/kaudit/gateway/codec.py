"""Kafka frames in and out: the one table of API keys, header peeks, and kio
decoding/encoding with cached readers.

Reading goes through kio's native readers (fast); writing through kio's pure-Python
writers, so only small responses (ApiVersions, FindCoordinator, DescribeCluster, rare
node-endpoint rewrites) are ever re-encoded. Frames are read as the broker reads them:
tagged fields the schema does not know are skipped (cut out before kio, which would
refuse them, see tagged) and their tag numbers returned, for the audit event to note.
Every kio failure — an API or version it does not know, an unknown error code, bytes
that are not UTF-8, truncated bytes — becomes a `FrameDecodeError`: the connection
refuses such a request when its API is one of `MUST_DECODE` (the broker never sees it),
and forwards the bytes unchanged otherwise.
Before kio reads a frame, `bounds` checks every length declared in it against the bytes
left: kio's reader reserves memory for a declared array length before reading it, and
a frame declaring billions of items would abort the process instead of failing.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from types import MappingProxyType
from typing import Any

from kio.index import load_request_schema, load_response_schema
from kio.schema.index import api_key_map, schema_name_map
from kio.serial import entity_reader, entity_writer

from kaudit.gateway.bounds import DeclaredLengthError, FrameCheck, frame_check
from kaudit.gateway.tagged import UnknownTag, tag_numbers, without_unknown_tags

_HEADER = struct.Struct(">hhi")
_INT16 = struct.Struct(">h")
_INT32 = struct.Struct(">i")


class FrameDecodeError(Exception):
    """A frame kio cannot read (unknown API or version, unknown tag, truncated)."""


def _camel(snake: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in snake.split("_"))


API_NAMES: Mapping[int, str] = MappingProxyType(
    {key: _camel(name) for key, name in api_key_map.items()}
)
"""Kafka API key → its protocol name (`CreateTopics`)."""

API_KEYS: Mapping[str, int] = MappingProxyType({name: key for key, name in API_NAMES.items()})
"""Protocol name → Kafka API key: the gateway's one table of API keys (kio's)."""

# The APIs the gateway treats on their own, named from that table.
PRODUCE = API_KEYS["Produce"]
FETCH = API_KEYS["Fetch"]
METADATA = API_KEYS["Metadata"]
FIND_COORDINATOR = API_KEYS["FindCoordinator"]
SASL_HANDSHAKE = API_KEYS["SaslHandshake"]
API_VERSIONS = API_KEYS["ApiVersions"]
SASL_AUTHENTICATE = API_KEYS["SaslAuthenticate"]
CREATE_DELEGATION_TOKEN = API_KEYS["CreateDelegationToken"]
DESCRIBE_DELEGATION_TOKEN = API_KEYS["DescribeDelegationToken"]
DESCRIBE_CLUSTER = API_KEYS["DescribeCluster"]


def _keys(*names: str) -> frozenset[int]:
    return frozenset(API_KEYS[name] for name in names)


CHANGES_STATE = _keys(
    # Data and offsets (WRITE on a topic, READ on a group the offsets go to):
    "Produce", "DeleteRecords", "OffsetCommit", "OffsetDelete", "TxnOffsetCommit",
    "AlterShareGroupOffsets", "DeleteShareGroupOffsets",
    # Transactions and idempotence (WRITE/IDEMPOTENT_WRITE on a transactional id):
    "InitProducerId", "AddPartitionsToTxn", "AddOffsetsToTxn", "EndTxn",
    # Group membership and share acknowledgements (READ on a group; the coordinator's
    # state, assignments and subscriptions, changes):
    "JoinGroup", "SyncGroup", "Heartbeat", "LeaveGroup", "ConsumerGroupHeartbeat",
    "ShareGroupHeartbeat", "StreamsGroupHeartbeat", "ShareFetch", "ShareAcknowledge",
    # Topics, partitions, replicas (CREATE/DELETE/ALTER on a topic or the cluster):
    "CreateTopics", "DeleteTopics", "CreatePartitions", "AlterReplicaLogDirs",
    "ElectLeaders", "AlterPartitionReassignments", "DeleteGroups",
    # Configuration, ACLs, quotas, credentials, tokens, features (ALTER, ALTER_CONFIGS,
    # CREATE/DELETE on the cluster or a token):
    "AlterConfigs", "IncrementalAlterConfigs", "CreateAcls", "DeleteAcls",
    "AlterClientQuotas", "AlterUserScramCredentials", "CreateDelegationToken",
    "RenewDelegationToken", "ExpireDelegationToken", "UpdateFeatures",
    # The brokers' and controllers' own (CLUSTER_ACTION or ALTER on the cluster), which
    # change replication, the quorum or the broker registry:
    "WriteTxnMarkers", "Vote", "BeginQuorumEpoch", "EndQuorumEpoch", "AlterPartition",
    "Envelope", "BrokerRegistration", "BrokerHeartbeat", "UnregisterBroker",
    "AllocateProducerIds", "ControllerRegistration", "AssignReplicasToDirs",
    "AddRaftVoter", "RemoveRaftVoter", "UpdateRaftVoter", "InitializeShareGroupState",
    "WriteShareGroupState", "DeleteShareGroupState",
)  # fmt: skip
"""APIs that change the cluster's state: those whose request the broker authorizes as a
change (an ACL operation other than READ/DESCRIBE on what it names, or READ on a group
whose coordinator it changes), as Kafka's protocol guide lists them per API."""

AUTHENTICATES = _keys("SaslHandshake", "SaslAuthenticate")
"""APIs that log a client in: a login the gateway cannot read is one it cannot record."""

NAMES_BROKERS = _keys("Metadata", "FindCoordinator", "DescribeCluster")
"""APIs whose responses carry broker addresses, which the gateway rewrites to its own:
without the request it does not read the response, and passing it on would send the
client to the brokers directly, past the audit (see rewrite.ADDRESSES)."""

MUST_DECODE = CHANGES_STATE | AUTHENTICATES | NAMES_BROKERS
"""APIs whose requests are refused, not forwarded, when the gateway cannot read them
(DESIGN: nothing changes the cluster unaudited)."""

READ_ONLY = frozenset(API_NAMES) - MUST_DECODE
"""Every other API kio knows (Fetch, ListOffsets, the Describe*/List* APIs, ApiVersions,
OffsetFetch, telemetry...): only reads, so one the gateway cannot read is forwarded and
recorded as undecoded."""


def api_name(key: int) -> str:
    return API_NAMES.get(key, f"Api{key}")


@cache
def parsable_versions(key: int) -> tuple[int, int] | None:
    """The (min, max) versions of an API that kio can read, or None if it knows none."""
    name = api_key_map.get(key)
    if name is None:
        return None
    versions = sorted(schema_name_map[name])
    return (versions[0], versions[-1]) if versions else None


def peek_request(frame: bytes) -> tuple[int, int, int]:
    """(api_key, api_version, correlation_id) of a request frame (no length prefix)."""
    if len(frame) < 8:
        raise FrameDecodeError(f"request of {len(frame)} bytes is shorter than a header")
    key, version, correlation_id = _HEADER.unpack_from(frame, 0)
    return key, version, correlation_id


def peek_client_id(frame: bytes) -> str | None:
    """The client id of a request frame, length prefix included (request headers v1
    and v2 both start with it); None when the header does not hold one."""
    if len(frame) < 14:
        return None
    size = _INT16.unpack_from(frame, 12)[0]
    if size < 0 or 14 + size > len(frame):
        return None
    return frame[14 : 14 + size].decode("utf-8", "replace")


def peek_correlation_id(frame: bytes) -> int:
    if len(frame) < 4:
        raise FrameDecodeError(f"response of {len(frame)} bytes has no correlation id")
    return int(_INT32.unpack_from(frame, 0)[0])


@dataclass(frozen=True, slots=True)
class DecodedRequest:
    api_key: int
    api_version: int
    correlation_id: int
    client_id: str | None
    body: Any
    unknown_tags: tuple[int, ...] = ()
    """Tagged fields the schema does not know (skipped, as the broker skips them)."""


Reader = Callable[[Any, int], tuple[Any, int]]


@cache
def _request_readers(key: int, version: int) -> tuple[Reader, Reader, FrameCheck]:
    schema = load_request_schema(key, version)
    header = schema.__header_schema__
    return entity_reader(header), entity_reader(schema), frame_check(header, schema)


@cache
def _response_schema(key: int, version: int) -> tuple[Reader, Reader, FrameCheck, type[Any]]:
    schema = load_response_schema(key, version)
    header = schema.__header_schema__
    return entity_reader(header), entity_reader(schema), frame_check(header, schema), schema


def _readable(check: FrameCheck, frame: bytes) -> tuple[bytes, tuple[int, ...]]:
    """`frame` as kio can read it, and the tagged fields cut out of it: `check` first,
    since a length kio cannot hold would abort the process."""
    unknown: list[UnknownTag] = []
    check(frame, unknown)
    if not unknown:
        return frame, ()
    return without_unknown_tags(frame, unknown), tag_numbers(unknown)


def decode_request(frame: bytes) -> DecodedRequest:
    """The header and body of a request frame, or FrameDecodeError."""
    key, version, correlation_id = peek_request(frame)
    try:
        read_header, read_body, check = _request_readers(key, version)
        readable, unknown = _readable(check, frame)
        header, size = read_header(readable, 0)
        body, _ = read_body(readable, size)
    except DeclaredLengthError as exc:
        raise FrameDecodeError(f"{api_name(key)} v{version} request: {exc}") from exc
    except Exception as exc:  # kio raises KeyError/ValueError/its own errors
        raise FrameDecodeError(f"{api_name(key)} v{version} request: {exc!r}") from exc
    return DecodedRequest(key, version, correlation_id, header.client_id, body, unknown)


def decode_response_noting(
    key: int, version: int, frame: bytes
) -> tuple[Any, Any, tuple[int, ...]]:
    """(header, body, tag numbers of the tagged fields skipped) of a response frame to a
    request of `key` at `version`, or FrameDecodeError."""
    try:
        read_header, read_body, check, _ = _response_schema(key, version)
        readable, unknown = _readable(check, frame)
        header, size = read_header(readable, 0)
        body, _ = read_body(readable, size)
    except DeclaredLengthError as exc:
        raise FrameDecodeError(f"{api_name(key)} v{version} response: {exc}") from exc
    except Exception as exc:
        raise FrameDecodeError(f"{api_name(key)} v{version} response: {exc!r}") from exc
    return header, body, unknown


def decode_response(key: int, version: int, frame: bytes) -> tuple[Any, Any]:
    """(header, body) of a response frame to a request of `key` at `version`."""
    header, body, _ = decode_response_noting(key, version, frame)
    return header, body


def encode_response(key: int, version: int, header: Any, body: Any) -> bytes:
    """A whole response frame, length prefix included."""
    schema = _response_schema(key, version)[-1]
    out = io.BytesIO()
    out.write(b"\0\0\0\0")
    entity_writer(schema.__header_schema__)(out, header)
    entity_writer(schema)(out, body)
    data = out.getbuffer()
    _INT32.pack_into(data, 0, len(data) - 4)
    return bytes(data)


def encode_request(header: Any, body: Any) -> bytes:
    """A whole request frame, length prefix included (used by tests and benchmarks)."""
    out = io.BytesIO()
    out.write(b"\0\0\0\0")
    entity_writer(type(body).__header_schema__)(out, header)
    entity_writer(type(body))(out, body)
    data = out.getbuffer()
    _INT32.pack_into(data, 0, len(data) - 4)
    return bytes(data)
