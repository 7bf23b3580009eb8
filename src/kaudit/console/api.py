"""The console's JSON API under `/api/v1`: the same actions as the pages, through the same
service layer, described by the OpenAPI document at `/api/v1/openapi.json`."""

from __future__ import annotations

from typing import Any

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
        return user_events(state(request).config, user.provider, user.login, limit)

    @router.get("/users/{provider}/{login}/events")
    def users_events(request: Request, provider: str, login: str,
                     limit: int = Query(100, ge=1, le=1000)) -> list[Any]:  # fmt: skip
        """A user's console events: their own, or anyone's for console admins."""
        user = current_user(request)
        assert user is not None
        mine = (user.provider, user.login) == (provider, login)
        if not mine and not state(request).service.rbac.is_admin(user):
            raise HTTPException(403, "only console admins may read another user's log")
        return user_events(state(request).config, provider, login, limit)

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

    return router
