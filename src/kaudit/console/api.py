"""The console's JSON API under `/api/v1`: the same actions as the pages, through the same
service layer, described by the OpenAPI document at `/api/v1/openapi.json`."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, Field
from starlette.requests import Request

from kaudit.console.audit import user_record
from kaudit.console.userlog import user_events
from kaudit.console.web import call_for, csrf_token, current_user, state

__all__ = ["api_router"]


class NewTopic(BaseModel):
    name: str = Field(min_length=1, max_length=249, pattern=r"^[A-Za-z0-9._-]+$")
    partitions: int = Field(default=1, ge=1, le=100_000)
    replication_factor: int = Field(default=1, ge=1, le=32)
    configs: dict[str, str] = {}


class ConfigChanges(BaseModel):
    configs: dict[str, str | None] = Field(min_length=1)
    """Each config's new value, or null to reset it to the default."""


class PartitionCount(BaseModel):
    partitions: int = Field(ge=1, le=100_000)


class NewMessage(BaseModel):
    key: str | None = None
    value: str | None = None
    headers: dict[str, str] = {}
    partition: int | None = Field(default=None, ge=0)


class OffsetReset(BaseModel):
    topic: str = Field(min_length=1)
    to: Literal["earliest", "latest", "time", "offset"]
    value: int | None = Field(default=None, ge=0)
    """The offset, or the time in milliseconds since the epoch."""
    dry_run: bool = True


class AclBinding(BaseModel):
    """One ACL binding, as the API's JSON body or the ACL page's form posts it."""

    resource_type: str = Field(examples=["topic"])
    resource_name: str = Field(min_length=1)
    pattern_type: str = "literal"
    principal: str = Field(min_length=1, examples=["User:alice"])
    host: str = "*"
    operation: str = Field(examples=["read"])
    permission: str = Field(examples=["allow"])


class Truncation(BaseModel):
    offsets: dict[int, int] | None = None
    """Delete records before each partition's offset; null: every record."""


def api_router() -> APIRouter:
    router = APIRouter(prefix="/api/v1", tags=["console"])

    @router.get("/me")
    def me(request: Request) -> dict[str, Any]:
        """Who is logged in, with their roles, and the CSRF token the session's
        state-changing requests carry in the `X-CSRF-Token` header."""
        user = current_user(request)
        assert user is not None
        return {**user_record(user), "roles": list(user.roles),
                "admin": state(request).service.rbac.is_admin(user),
                "csrf_token": csrf_token(request)}  # fmt: skip

    @router.get("/me/events")
    def my_events(request: Request, limit: int = Query(100, ge=1, le=1000)) -> list[Any]:
        """The logged-in user's own console events, newest first."""
        user = current_user(request)
        assert user is not None
        return user_events(state(request).config, user.provider, user.id, limit)

    @router.get("/users/{provider}/{user_id}/events")
    def users_events(request: Request, provider: str, user_id: str,
                     limit: int = Query(100, ge=1, le=1000)) -> list[Any]:  # fmt: skip
        """A user's console events by their provider's stable id (the OIDC `sub`, the
        GitHub numeric id, the local user name): their own, or anyone's for console admins."""
        user = current_user(request)
        assert user is not None
        mine = (user.provider, user.id) == (provider, user_id)
        if not mine and not state(request).service.rbac.is_admin(user):
            raise HTTPException(403, "only console admins may read another user's log")
        return user_events(state(request).config, provider, user_id, limit)

    @router.get("/clusters")
    def clusters(request: Request) -> list[str]:
        return state(request).service.clusters.names

    @router.get("/clusters/{cluster}/topics")
    def list_topics(request: Request, cluster: str) -> list[dict[str, Any]]:
        """The topics the user may see."""
        return state(request).service.list_topics(call_for(request, cluster))

    @router.post("/clusters/{cluster}/topics", status_code=201)
    def create_topic(request: Request, cluster: str, topic: NewTopic) -> dict[str, Any]:
        return state(request).service.create_topic(
            call_for(request, cluster), topic.name, topic.partitions, topic.replication_factor,
            topic.configs,
        )  # fmt: skip

    @router.get("/clusters/{cluster}/topics/{topic}")
    def describe_topic(request: Request, cluster: str, topic: str) -> dict[str, Any]:
        """Partitions (leader, replicas, ISR) and configs."""
        return state(request).service.describe_topic(call_for(request, cluster), topic)

    @router.delete("/clusters/{cluster}/topics/{topic}")
    def delete_topic(request: Request, cluster: str, topic: str) -> dict[str, Any]:
        return state(request).service.delete_topic(call_for(request, cluster), topic)

    @router.patch("/clusters/{cluster}/topics/{topic}/configs")
    def edit_configs(request: Request, cluster: str, topic: str,
                     changes: ConfigChanges) -> dict[str, Any]:  # fmt: skip
        """Set or reset configs; the answer holds each one's old and new value."""
        return state(request).service.edit_topic_configs(
            call_for(request, cluster), topic, changes.configs
        )

    @router.post("/clusters/{cluster}/topics/{topic}/partitions")
    def add_partitions(request: Request, cluster: str, topic: str,
                       count: PartitionCount) -> dict[str, Any]:  # fmt: skip
        return state(request).service.add_partitions(
            call_for(request, cluster), topic, count.partitions
        )

    @router.post("/clusters/{cluster}/topics/{topic}/truncate")
    def truncate(request: Request, cluster: str, topic: str, body: Truncation) -> dict[str, Any]:
        return state(request).service.truncate_topic(
            call_for(request, cluster), topic, body.offsets
        )

    @router.post("/clusters/{cluster}/topics/{topic}/messages", status_code=201)
    def produce(request: Request, cluster: str, topic: str, message: NewMessage) -> dict[str, Any]:
        """Produce one message; where it landed."""
        return state(request).service.produce(
            call_for(request, cluster), topic, message.key, message.value,
            list(message.headers.items()), message.partition,
        )  # fmt: skip

    @router.get("/clusters/{cluster}/topics/{topic}/messages")
    def inspect(
        request: Request,
        cluster: str,
        topic: str,
        partition: int | None = Query(None, ge=0),
        offset: int | None = Query(None, ge=0),
        since_ms: int | None = Query(None, ge=0),
        limit: int = Query(20, ge=1),
        render: Literal["text", "json", "hex"] = "text",
    ) -> dict[str, Any]:
        """Messages from an offset or a time (always audited; masked by the rules unless
        the user holds TOPIC_UNMASK)."""
        return state(request).service.inspect(
            call_for(request, cluster), topic, partition=partition, offset=offset,
            since_ms=since_ms, limit=limit, render=render,
        )  # fmt: skip

    @router.get("/clusters/{cluster}/groups")
    def list_groups(request: Request, cluster: str) -> list[dict[str, Any]]:
        return state(request).service.list_groups(call_for(request, cluster))

    @router.get("/clusters/{cluster}/groups/{group}")
    def describe_group(request: Request, cluster: str, group: str) -> dict[str, Any]:
        """Members, committed offsets and lag."""
        return state(request).service.describe_group(call_for(request, cluster), group)

    @router.post("/clusters/{cluster}/groups/{group}/reset-offsets")
    def reset_offsets(
        request: Request, cluster: str, group: str, reset: OffsetReset
    ) -> dict[str, Any]:
        """Each partition's current and new offset; committed unless dry_run."""
        return state(request).service.reset_offsets(
            call_for(request, cluster), group, reset.topic, reset.to, reset.value, reset.dry_run
        )

    @router.delete("/clusters/{cluster}/groups/{group}")
    def delete_group(request: Request, cluster: str, group: str) -> dict[str, Any]:
        return state(request).service.delete_group(call_for(request, cluster), group)

    @router.get("/clusters/{cluster}/acls")
    def list_acls(request: Request, cluster: str) -> list[dict[str, str]]:
        """The ACL bindings the user may edit."""
        return state(request).service.list_acls(call_for(request, cluster))

    @router.post("/clusters/{cluster}/acls", status_code=201)
    def create_acl(request: Request, cluster: str, binding: AclBinding) -> dict[str, Any]:
        return state(request).service.create_acl(call_for(request, cluster), binding.model_dump())

    @router.post("/clusters/{cluster}/acls/delete")
    def delete_acl(request: Request, cluster: str, binding: AclBinding) -> dict[str, Any]:
        """Delete the binding with exactly these fields."""
        return state(request).service.delete_acl(call_for(request, cluster), binding.model_dump())

    @router.get("/clusters/{cluster}/brokers")
    def list_brokers(request: Request, cluster: str) -> dict[str, Any]:
        return state(request).service.list_brokers(call_for(request, cluster))

    @router.get("/clusters/{cluster}/brokers/{broker}/configs")
    def broker_configs(request: Request, cluster: str, broker: int) -> dict[str, Any]:
        return state(request).service.broker_configs(call_for(request, cluster), broker)

    @router.patch("/clusters/{cluster}/brokers/{broker}/configs")
    def edit_broker_configs(
        request: Request, cluster: str, broker: int, changes: ConfigChanges
    ) -> dict[str, Any]:
        return state(request).service.edit_broker_configs(
            call_for(request, cluster), broker, changes.configs
        )

    return router
