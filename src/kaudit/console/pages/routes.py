"""The console's pages: topics, messages, consumer groups, ACLs, brokers and the user's
own log. Each page calls the service layer, never Kafka; a form posts back and the page
shows what happened, or why it was refused."""

from __future__ import annotations

from typing import Annotated, Any, Literal
from urllib.parse import urlencode

import orjson
from fastapi import APIRouter, Form, HTTPException, Query
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from kaudit.console.api import AclBinding
from kaudit.console.userlog import log_days, user_page
from kaudit.console.web import BadRequest, call_for, current_user, path_segment, state
from kaudit.console.web import render as render_page
from kaudit.errors import SearchError
from kaudit.store.browse import Cursor
from kaudit.timeparse import parse_when

__all__ = ["pages_router"]

MY_LOG_PAGE_SIZE = 200


def _configs(text: str) -> dict[str, str]:
    """`name=value` lines from a form's text area."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        if line.strip():
            name, sep, value = line.partition("=")
            if not sep:
                raise HTTPException(422, f"expected name=value on each line, got {line.strip()!r}")
            out[name.strip()] = value.strip()
    return out


def _epoch_ms(text: str) -> int:
    """A time as `parse_when` reads it, in milliseconds since the epoch."""
    ms = int(parse_when(text).timestamp() * 1000)
    if ms < 0:
        raise BadRequest(f"time {text!r} is before 1970; accepted: a time since 1970-01-01")
    return ms


def _reset_value(to: str, value: str) -> int | None:
    """The reset form's value: a time (milliseconds) for `time`, an offset for `offset`."""
    text = value.strip()
    if not text:
        return None
    if to == "time":
        return _epoch_ms(text)
    if not (text.isascii() and text.isdigit()):
        raise BadRequest(f"offset {text!r} is not an offset; accepted: a whole number, 0 or more")
    return int(text)


def pages_router() -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/")
    def home(request: Request) -> Response:
        first = state(request).service.clusters.names[0]
        return RedirectResponse(f"/clusters/{path_segment(first)}/topics", status_code=303)

    @router.get("/clusters/{cluster}/topics")
    def topics_page(request: Request, cluster: str, message: str | None = None) -> Response:
        found = state(request).service.list_topics(call_for(request, cluster))
        return render_page(request, "topics.html", cluster=cluster, topics=found, message=message)

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
        return RedirectResponse(
            f"/clusters/{path_segment(cluster)}/topics/{path_segment(name)}", status_code=303
        )

    @router.get("/clusters/{cluster}/topics/{topic}")
    def topic_page(request: Request, cluster: str, topic: str) -> Response:
        service = state(request).service
        call = call_for(request, cluster)
        described = service.describe_topic(call, topic)
        return render_page(request, "topic.html", cluster=cluster, topic=described)

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
        return RedirectResponse(f"/clusters/{path_segment(cluster)}/topics", status_code=303)

    @router.post("/clusters/{cluster}/topics/{topic}/produce")
    def produce(
        request: Request,
        cluster: str,
        topic: str,
        key: str = Form(""),
        value: str = Form(""),
        headers: str = Form(""),
    ) -> Response:
        done = state(request).service.produce(
            call_for(request, cluster), topic, key or None, value, list(_configs(headers).items())
        )
        return _done(request, cluster, topic, "Message produced", done)

    @router.get("/clusters/{cluster}/topics/{topic}/messages")
    def messages_page(
        request: Request,
        cluster: str,
        topic: str,
        offset: int | None = Query(None, ge=0),
        since: str | None = None,
        limit: int = Query(20, ge=1),
        render: Literal["text", "json", "hex"] = "text",
    ) -> Response:
        since_ms = _epoch_ms(since) if since else None
        found = state(request).service.inspect(
            call_for(request, cluster), topic, offset=None if since_ms else offset,
            since_ms=since_ms, limit=limit, render=render,
        )  # fmt: skip
        return render_page(request, "messages.html", cluster=cluster, topic=topic, found=found,
                           mode=render)  # fmt: skip

    @router.get("/clusters/{cluster}/groups")
    def groups_page(request: Request, cluster: str) -> Response:
        found = state(request).service.list_groups(call_for(request, cluster))
        return render_page(request, "groups.html", cluster=cluster, groups=found)

    @router.get("/clusters/{cluster}/groups/{group}")
    def group_page(request: Request, cluster: str, group: str) -> Response:
        described = state(request).service.describe_group(call_for(request, cluster), group)
        return render_page(request, "group.html", cluster=cluster, group=described)

    @router.post("/clusters/{cluster}/groups/{group}/reset-offsets")
    def reset_offsets(
        request: Request,
        cluster: str,
        group: str,
        topic: str = Form(min_length=1),
        to: Literal["earliest", "latest", "time", "offset"] = Form(),
        value: str = Form(""),
        dry_run: bool = Form(False),
    ) -> Response:
        done = state(request).service.reset_offsets(
            call_for(request, cluster), group, topic, to, _reset_value(to, value), dry_run
        )
        what = "Offsets preview (dry run)" if dry_run else "Offsets reset"
        return _done(request, cluster, group, what, done, kind="groups")

    @router.post("/clusters/{cluster}/groups/{group}/delete")
    def delete_group(request: Request, cluster: str, group: str) -> Response:
        state(request).service.delete_group(call_for(request, cluster), group)
        return RedirectResponse(f"/clusters/{path_segment(cluster)}/groups", status_code=303)

    @router.get("/clusters/{cluster}/acls")
    def acls_page(request: Request, cluster: str) -> Response:
        found = state(request).service.list_acls(call_for(request, cluster))
        return render_page(request, "acls.html", cluster=cluster, acls=found)

    @router.post("/clusters/{cluster}/acls")
    def create_acl(
        request: Request, cluster: str, binding: Annotated[AclBinding, Form()]
    ) -> Response:
        state(request).service.create_acl(call_for(request, cluster), binding.model_dump())
        return RedirectResponse(f"/clusters/{path_segment(cluster)}/acls", status_code=303)

    @router.post("/clusters/{cluster}/acls/delete")
    def delete_acl(
        request: Request, cluster: str, binding: Annotated[AclBinding, Form()]
    ) -> Response:
        state(request).service.delete_acl(call_for(request, cluster), binding.model_dump())
        return RedirectResponse(f"/clusters/{path_segment(cluster)}/acls", status_code=303)

    @router.get("/clusters/{cluster}/brokers")
    def brokers_page(request: Request, cluster: str) -> Response:
        found = state(request).service.list_brokers(call_for(request, cluster))
        return render_page(request, "brokers.html", cluster=cluster, found=found)

    @router.get("/clusters/{cluster}/brokers/{broker}")
    def broker_page(request: Request, cluster: str, broker: int) -> Response:
        configs = state(request).service.broker_configs(call_for(request, cluster), broker)
        return render_page(request, "broker.html", cluster=cluster, broker=broker, configs=configs)

    @router.post("/clusters/{cluster}/brokers/{broker}/configs")
    def edit_broker_configs(
        request: Request, cluster: str, broker: int, configs: str = Form(min_length=1)
    ) -> Response:
        done = state(request).service.edit_broker_configs(
            call_for(request, cluster), broker, _configs(configs)
        )
        return _done(request, cluster, str(broker), "Broker configs changed", done, kind="brokers")

    @router.get("/my-log")
    def my_log(request: Request) -> Response:
        user = current_user(request)
        assert user is not None
        view = request.app.state.log_view
        after = request.query_params.get("after")
        try:
            cursor = Cursor.decode(after) if after else None
        except SearchError as exc:
            raise HTTPException(400, str(exc)) from None
        found = user_page(
            view.search(), user.provider, user.id, days=log_days(view.config),
            size=MY_LOG_PAGE_SIZE, after=cursor,
        )  # fmt: skip
        older = urlencode({"after": found.next.encode()}) if found.next else None
        return render_page(
            request, "my_log.html", events=[orjson.loads(h.line) for h in found.hits],
            older=older, searched_to=found.searched_to,
        )  # fmt: skip

    return router


def _done(
    request: Request, cluster: str, name: str, what: str, result: Any, kind: str = "topics"
) -> Response:
    back = f"/clusters/{path_segment(cluster)}/{kind}/{path_segment(name)}"
    return render_page(request, "done.html", name=name, what=what, result=result, back=back)
