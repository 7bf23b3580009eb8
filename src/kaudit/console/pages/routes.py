"""The console's pages: topics, messages, consumer groups, ACLs, brokers and the user's
own log. Each page calls the service layer, never Kafka; a form posts back and the page
shows what happened, or why it was refused."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Form
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from kaudit.console.userlog import user_events
from kaudit.console.web import call_for, current_user, render, state

__all__ = ["pages_router"]


def _configs(text: str) -> dict[str, str]:
    """`name=value` lines from a form's text area."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        if line.strip():
            name, sep, value = line.partition("=")
            if not sep:
                raise ValueError(f"expected name=value, got {line.strip()!r}")
            out[name.strip()] = value.strip()
    return out


def pages_router() -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/")
    def home(request: Request) -> Response:
        first = state(request).service.clusters.names[0]
        return RedirectResponse(f"/clusters/{first}/topics", status_code=303)

    @router.get("/clusters/{cluster}/topics")
    def topics_page(request: Request, cluster: str, message: str | None = None) -> Response:
        found = state(request).service.list_topics(call_for(request, cluster))
        return render(request, "topics.html", cluster=cluster, topics=found, message=message)

    @router.post("/clusters/{cluster}/topics")
    def create_topic(
        request: Request,
        cluster: str,
        name: str = Form(min_length=1, max_length=249, pattern=r"^[A-Za-z0-9._-]+$"),
        partitions: int = Form(1, ge=1, le=100_000),
        replication_factor: int = Form(1, ge=1, le=32),
        configs: str = Form(""),
    ) -> Response:
        service = state(request).service
        service.create_topic(
            call_for(request, cluster), name, partitions, replication_factor, _configs(configs)
        )
        return RedirectResponse(f"/clusters/{cluster}/topics/{name}", status_code=303)

    @router.get("/clusters/{cluster}/topics/{topic}")
    def topic_page(request: Request, cluster: str, topic: str) -> Response:
        service = state(request).service
        call = call_for(request, cluster)
        described = service.describe_topic(call, topic)
        return render(request, "topic.html", cluster=cluster, topic=described)

    @router.post("/clusters/{cluster}/topics/{topic}/configs")
    def edit_configs(request: Request, cluster: str, topic: str,
                     configs: str = Form(min_length=1)) -> Response:  # fmt: skip
        service = state(request).service
        done = service.edit_topic_configs(call_for(request, cluster), topic, _configs(configs))
        return _done(request, cluster, topic, "Configs changed", done)

    @router.post("/clusters/{cluster}/topics/{topic}/partitions")
    def add_partitions(request: Request, cluster: str, topic: str,
                       partitions: int = Form(ge=1, le=100_000)) -> Response:  # fmt: skip
        done = state(request).service.add_partitions(call_for(request, cluster), topic, partitions)
        return _done(request, cluster, topic, "Partitions added", done)

    @router.post("/clusters/{cluster}/topics/{topic}/truncate")
    def truncate(request: Request, cluster: str, topic: str) -> Response:
        done = state(request).service.truncate_topic(call_for(request, cluster), topic, None)
        return _done(request, cluster, topic, "Records deleted", done)

    @router.post("/clusters/{cluster}/topics/{topic}/delete")
    def delete_topic(request: Request, cluster: str, topic: str) -> Response:
        state(request).service.delete_topic(call_for(request, cluster), topic)
        return RedirectResponse(f"/clusters/{cluster}/topics", status_code=303)

    @router.get("/my-log")
    def my_log(request: Request) -> Response:
        user = current_user(request)
        assert user is not None
        events = user_events(state(request).config, user.provider, user.login, 200)
        return render(request, "my_log.html", events=events)

    return router


def _done(request: Request, cluster: str, topic: str, what: str, result: Any) -> Response:
    return render(request, "done.html", cluster=cluster, topic=topic, what=what, result=result)
