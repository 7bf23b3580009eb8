"""What the gateway offers in ApiVersions (rewrite.offered_versions): versions kio reads,
none whose responses name brokers the gateway does not rewrite; and the ApiVersions v0
answer to an ApiVersions request at a version it does not offer."""

from __future__ import annotations

from datetime import timedelta

from kio.index import load_response_schema
from kio.schema.api_versions.v3.response import ApiVersion, ApiVersionsResponse
from kio.schema.errors import ErrorCode
from kio.static.primitive import i16, i32Timedelta

from kaudit.gateway.codec import API_KEYS, API_NAMES, MUST_DECODE, decode_response
from kaudit.gateway.refusal import unsupported_api_versions
from kaudit.gateway.rewrite import (
    APPLICATION_ENDPOINTS,
    NEVER_UNREAD,
    REWRITES_ADDRESSES,
    clamp_api_versions,
    names_hosts,
    offered_versions,
    settle_offered_versions,
)

SHARE_CONSUMPTION = ("ShareGroupHeartbeat", "ShareFetch", "ShareAcknowledge")


def test_share_group_consumption_is_not_offered_and_fetch_stops_before_node_endpoints() -> None:
    for name in SHARE_CONSUMPTION:
        assert offered_versions(API_KEYS[name]) is None, name
    assert offered_versions(API_KEYS["Fetch"]) == (4, 15)
    assert offered_versions(API_KEYS["DescribeQuorum"]) == (0, 1)  # v2 names controllers
    # The share groups' admin APIs name no brokers: offered.
    for name in ("ShareGroupDescribe", "DescribeShareGroupOffsets", "AlterShareGroupOffsets"):
        assert offered_versions(API_KEYS[name]) is not None, name


def test_every_offered_response_naming_brokers_is_one_the_gateway_rewrites_and_reads() -> None:
    naming = set()
    for key in API_NAMES:
        versions = offered_versions(key)
        if versions is None or key in APPLICATION_ENDPOINTS:
            continue
        for version in range(versions[0], versions[1] + 1):
            if names_hosts(load_response_schema(key, version)):
                naming.add(API_NAMES[key])
    assert naming == {"Produce", "Metadata", "FindCoordinator", "DescribeCluster"}
    assert {API_NAMES[k] for k in REWRITES_ADDRESSES} == naming
    # Their requests are refused when unreadable, their responses never passed on unread.
    assert REWRITES_ADDRESSES <= MUST_DECODE
    assert REWRITES_ADDRESSES <= NEVER_UNREAD


def test_api_versions_leaves_out_what_is_not_offered() -> None:
    def entry(name: str, high: int) -> ApiVersion:
        key = i16(API_KEYS[name])
        return ApiVersion(api_key=key, min_version=i16(0), max_version=i16(high))

    body = ApiVersionsResponse(
        error_code=ErrorCode.none,
        api_keys=(entry("Fetch", 18), entry("ShareFetch", 2), entry("ShareAcknowledge", 2),
                  entry("ShareGroupHeartbeat", 1), entry("ShareGroupDescribe", 1)),
        throttle_time=i32Timedelta.parse(timedelta(0)),
    )  # fmt: skip
    out = clamp_api_versions(body)
    assert [(API_NAMES[int(a.api_key)], int(a.max_version)) for a in out.api_keys] == [
        ("Fetch", 15),
        ("ShareGroupDescribe", 1),
    ]


def test_an_api_versions_request_at_a_version_not_offered_is_answered_at_v0() -> None:
    frame = unsupported_api_versions(31)
    header, body = decode_response(API_KEYS["ApiVersions"], 0, frame[4:])
    assert int(header.correlation_id) == 31
    assert int(body.error_code) == 35  # UNSUPPORTED_VERSION
    [entry] = body.api_keys
    low, high = offered_versions(API_KEYS["ApiVersions"]) or (-1, -1)
    assert (int(entry.api_key), int(entry.min_version), int(entry.max_version)) == (
        API_KEYS["ApiVersions"], low, high,
    )  # fmt: skip


def test_settling_works_out_every_apis_offered_versions_before_any_client_asks() -> None:
    offered_versions.cache_clear()
    settle_offered_versions()
    assert offered_versions.cache_info().currsize == len(API_KEYS)
