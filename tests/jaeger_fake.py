"""A loopback stand-in for Jaeger's query service, answering in Jaeger's documented shapes.

Jaeger cannot run on the test machines, so this aiohttp app answers the two query APIs
the lookup uses, with bodies shaped after Jaeger's own sources:

- api_v3 (jaeger-idl `swagger/api_v3/query_service.openapi.yaml`, jaeger
  `cmd/query/app/apiv3/http_gateway.go`): OTLP JSON under `{"result": {"resourceSpans"}}`,
  made here by OpenTelemetry's own OTLP JSON encoder; no match is HTTP 404 with the body
  `{"error":{"httpCode":404,"message":"No traces found"}}` written by Go's `http.Error`.
- `/api/traces` (jaeger `internal/uimodel/model.go`, `cmd/query/app/http_handler.go`):
  `{"data": [Trace], "total", "limit", "offset", "errors"}` with times in microseconds,
  typed tags and a `processes` map; a missing trace is 404 with `errors: [{code, msg}]`.

The store filters like Jaeger does (service, time window, attributes/tags), so a client
that sends the wrong parameters finds nothing. `requests` records what was asked.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aiohttp import web
from opentelemetry.exporter.otlp.json.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode

__all__ = ["STORE", "JaegerMode", "JaegerStore", "jaeger_app"]

# Jaeger's UI, served for every path the router does not know (Jaeger 1.x static handler).
_UI_PAGE = "<!doctype html><html><head><title>Jaeger UI</title></head><body></body></html>"


class JaegerMode(enum.Enum):
    """Which Jaeger the fake plays."""

    #: Jaeger 2.x: api_v3 with `query.attributes`, and `/api/traces`.
    CURRENT = "current"
    #: A release whose api_v3 ignores `query.attributes` (returns every trace of the service).
    V3_WITHOUT_ATTRIBUTES = "v3-without-attributes"
    #: No api_v3 route: Go's router answers `404 page not found`.
    V1_ONLY = "v1-only"
    #: No api_v3 route, and the UI's HTML page answers unknown paths with 200.
    V1_ONLY_UI_FALLBACK = "v1-only-ui-fallback"


@dataclass
class JaegerStore:
    """The spans the fake Jaeger holds, and the requests it received."""

    spans: list[ReadableSpan] = field(default_factory=list)
    mode: JaegerMode = JaegerMode.CURRENT
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    #: How many of the newest matching traces an api_v3 search returns.
    search_limit: int = 20

    def traces(self, trace_ids: Iterable[int] | None = None) -> dict[int, list[ReadableSpan]]:
        """Spans grouped by trace id, optionally only for `trace_ids`."""
        wanted = set(trace_ids) if trace_ids is not None else None
        grouped: dict[int, list[ReadableSpan]] = {}
        for span in self.spans:
            trace_id = _context(span).trace_id
            if wanted is None or trace_id in wanted:
                grouped.setdefault(trace_id, []).append(span)
        return grouped

    def search(
        self, service: str, start_ns: int, end_ns: int, attributes: dict[str, str] | None
    ) -> list[int]:
        """Trace ids with a span of `service`, started in the window, matching `attributes`."""
        found = []
        for trace_id, spans in self.traces().items():
            for span in spans:
                if (
                    _service(span) == service
                    and start_ns <= (span.start_time or 0) <= end_ns
                    and all(
                        str((span.attributes or {}).get(k)) == v
                        for k, v in (attributes or {}).items()
                    )
                ):
                    found.append(trace_id)
                    break
        return found


STORE = web.AppKey("jaeger_store", JaegerStore)


def jaeger_app(store: JaegerStore) -> web.Application:
    """The fake query service, serving `store`."""
    app = web.Application()
    app[STORE] = store

    @web.middleware
    async def record(request: web.Request, handler: Any) -> web.StreamResponse:
        store.requests.append((request.path, dict(request.query)))
        response: web.StreamResponse = await handler(request)
        return response

    app.middlewares.append(record)
    if store.mode in (JaegerMode.CURRENT, JaegerMode.V3_WITHOUT_ATTRIBUTES):
        app.router.add_get("/api/v3/traces", _v3_find)
        app.router.add_get("/api/v3/traces/{trace_id}", _v3_get)
    elif store.mode is JaegerMode.V1_ONLY:
        app.router.add_get("/api/v3/{tail:.*}", _go_not_found)
    else:
        app.router.add_get("/api/v3/{tail:.*}", _ui_page)
    app.router.add_get("/api/traces", _v1_find)
    app.router.add_get("/api/traces/{trace_id}", _v1_get)
    return app


# -- api_v3 -----------------------------------------------------------------------------


async def _v3_find(request: web.Request) -> web.Response:
    store = request.app[STORE]
    query = request.query
    low, high = query.get("query.start_time_min"), query.get("query.start_time_max")
    if not low or not high:
        return _v3_error(400, "query.start_time_min and query.start_time_max are required")
    attributes = None
    if store.mode is JaegerMode.CURRENT and "query.attributes" in query:
        attributes = json.loads(query["query.attributes"])
    found = store.search(
        query.get("query.service_name", ""), _rfc3339_ns(low), _rfc3339_ns(high), attributes
    )
    return _v3_result(store, found[-store.search_limit :])


async def _v3_get(request: web.Request) -> web.Response:
    store = request.app[STORE]
    try:
        trace_id = int(request.match_info["trace_id"], 16)
    except ValueError:
        return _v3_error(400, "malformed parameter trace_id")
    return _v3_result(store, [trace_id])


def _v3_result(store: JaegerStore, trace_ids: Sequence[int]) -> web.Response:
    spans = [span for group in store.traces(trace_ids).values() for span in group]
    if not spans:
        return _v3_error(404, "No traces found")
    return web.json_response({"result": encode_spans(spans).to_dict()})


def _v3_error(status: int, message: str) -> web.Response:
    # Go's http.Error: plain text content type, the JSON body, and a newline.
    body = json.dumps({"error": {"httpCode": status, "message": message}})
    return web.Response(
        status=status,
        text=body + "\n",
        content_type="text/plain",
        charset="utf-8",
        headers={"X-Content-Type-Options": "nosniff"},
    )


async def _go_not_found(request: web.Request) -> web.Response:
    return web.Response(status=404, text="404 page not found\n", content_type="text/plain")


async def _ui_page(request: web.Request) -> web.Response:
    return web.Response(text=_UI_PAGE, content_type="text/html")


# -- /api/traces (UI model) -------------------------------------------------------------


async def _v1_find(request: web.Request) -> web.Response:
    store = request.app[STORE]
    query = request.query
    if not query.get("service"):
        return _v1_response([], status=400, errors=[{"code": 400, "msg": "service is required"}])
    tags = json.loads(query["tags"]) if "tags" in query else None
    found = store.search(
        query["service"],
        int(query.get("start", "0")) * 1000,
        int(query.get("end", str(2**62))) * 1000,
        tags,
    )
    return _v1_response([_ui_trace(spans) for spans in store.traces(found).values()])


async def _v1_get(request: web.Request) -> web.Response:
    store = request.app[STORE]
    trace_id = int(request.match_info["trace_id"], 16)
    spans = store.traces([trace_id]).get(trace_id)
    if not spans:
        return _v1_response(None, status=404, errors=[{"code": 404, "msg": "trace not found"}])
    return _v1_response([_ui_trace(spans)])


def _v1_response(
    data: list[dict[str, Any]] | None, *, status: int = 200, errors: list[Any] | None = None
) -> web.Response:
    body = {"data": data, "total": 0, "limit": 0, "offset": 0, "errors": errors}
    return web.json_response(body, status=status)


def _ui_trace(spans: list[ReadableSpan]) -> dict[str, Any]:
    return {
        "traceID": _ui_trace_id(_context(spans[0]).trace_id),
        "spans": [_ui_span(span) for span in spans],
        "processes": {"p1": {"serviceName": _service(spans[0]), "tags": []}},
        "warnings": None,
    }


def _ui_span(span: ReadableSpan) -> dict[str, Any]:
    context = _context(span)
    start_ns, end_ns = span.start_time or 0, span.end_time or 0
    tags = [_ui_tag(key, value) for key, value in (span.attributes or {}).items()]
    tags.append(_ui_tag("span.kind", span.kind.name.lower()))
    if span.status.status_code is not StatusCode.UNSET:
        tags.append(_ui_tag("otel.status_code", span.status.status_code.name))
    if span.status.status_code is StatusCode.ERROR:
        tags.append(_ui_tag("error", True))
        if span.status.description:
            tags.append(_ui_tag("otel.status_description", span.status.description))
    references = []
    if span.parent is not None:
        references.append(
            {
                "refType": "CHILD_OF",
                "traceID": _ui_trace_id(context.trace_id),
                "spanID": f"{span.parent.span_id:016x}",
            }
        )
    return {
        "traceID": _ui_trace_id(context.trace_id),
        "spanID": f"{context.span_id:016x}",
        "flags": 1,
        "operationName": span.name,
        "references": references,
        "startTime": start_ns // 1000,
        "duration": (end_ns - start_ns) // 1000,
        "tags": tags,
        "logs": [],
        "processID": "p1",
        "warnings": None,
    }


def _ui_tag(key: str, value: object) -> dict[str, Any]:
    kinds = {bool: "bool", int: "int64", float: "float64"}
    return {"key": key, "type": kinds.get(type(value), "string"), "value": value}


def _ui_trace_id(trace_id: int) -> str:
    # Jaeger's TraceID.String() leaves out a zero high half.
    high, low = trace_id >> 64, trace_id & (2**64 - 1)
    return f"{low:016x}" if high == 0 else f"{high:016x}{low:016x}"


# -- helpers ----------------------------------------------------------------------------


def _context(span: ReadableSpan) -> Any:
    context = span.context
    assert context is not None
    return context


def _service(span: ReadableSpan) -> str:
    return str(span.resource.attributes.get("service.name", ""))


def _rfc3339_ns(text: str) -> int:
    moment = datetime.fromisoformat(text)
    return int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1000
