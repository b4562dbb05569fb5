"""Jaeger query service: searches that filter, and the one matching trace fetched whole.

A search by request id asks `/api/traces?tags=...`, the API that filters by attribute in
every Jaeger release (2.12's api_v3 ignores `query.attributes` and answers with the
latest traces of the service, whole). Only the newest matching trace is then fetched
again by its id from api_v3, as OTLP JSON, the shape every trace store is read in.
Without a service name every service the store lists is searched.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterator, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

import aiohttp

from ._errors import BackendError, TraceNotFoundError
from ._http import Response, get
from ._model import (
    REQUEST_ID_ATTRIBUTE,
    AttributeValue,
    Span,
    Trace,
    group_traces,
    parse_resource_spans,
)
from ._query import shown
from ._window import format_duration

__all__ = ["DEFAULT_JAEGER_URL", "JaegerBackend"]

DEFAULT_JAEGER_URL = "http://localhost:16686"
_STORE = "Jaeger"
# Clocks of the app and of this machine may differ a little; search a bit past "now".
_CLOCK_SLACK = timedelta(minutes=5)
# How many matching traces a search returns. Jaeger's api_v3 refuses a search without it
# ("search depth must be greater than 0"); one request id names one trace, so a few
# more only show that an id was reused.
_SEARCH_LIMIT = 20
# Searches of several services run this many at a time: each is small (a service's spans
# that carry the id), and a store with hundreds of services is not asked all at once.
_PARALLEL_SEARCHES = 4
# The UI model keeps these OpenTelemetry fields as tags; they become span fields here.
_FIELD_TAGS = frozenset(
    {"span.kind", "otel.status_code", "otel.status_description", "error", "internal.span.format"}
)


# One service's search: (service, request id, window start, window end) -> spans.
_Search = Callable[[str, str, datetime, datetime], Awaitable[list[Span]]]


class _UnavailableError(Exception):
    """The API asked is not served at this address (an older or newer Jaeger, or a proxy)."""


class JaegerBackend:
    """Find traces in a Jaeger query service (Jaeger 2.x; 1.x through `/api/traces`)."""

    def __init__(
        self,
        *,
        session: aiohttp.ClientSession,
        url: str = DEFAULT_JAEGER_URL,
        service: str | None = None,
        lookback: timedelta = timedelta(hours=24),
    ) -> None:
        self._session = session
        self._url = url.rstrip("/")
        self._service = service
        self._lookback = lookback

    async def by_trace_id(self, trace_id: str) -> Trace:
        """Fetch one trace by its id (no time window needed)."""
        try:
            spans = _v3_spans(await self._get(f"/api/v3/traces/{trace_id}"))
        except _UnavailableError:
            spans = _v1_spans(await self._get(f"/api/traces/{trace_id}"))
        for trace in group_traces(spans):
            if trace.trace_id == trace_id:
                return trace
        raise self._not_found(f"no trace {trace_id} in Jaeger at {self._url}", by_request=False)

    async def by_request_id(self, request_id: str) -> list[Trace]:
        """Search the time window for traces whose spans carry `request.id`, newest first.

        Only the answers of searches that filter are read, so what crosses the network is
        the matching trace, not the store's latest ones.
        """
        end = datetime.now(timezone.utc) + _CLOCK_SLACK
        start = end - self._lookback - _CLOCK_SLACK
        services = [self._service] if self._service else await self._services()
        try:
            found = await self._each_service(services, self._v1_search, request_id, start, end)
        except _UnavailableError:
            # No UI API here: api_v3 is all there is, and what it returns is OTLP already.
            found = await self._each_service(services, self._v3_search, request_id, start, end)
        else:
            if found:
                found[0] = await self._whole(found[0])
        if not found:
            where = f"service {self._service!r}" if self._service else f"{len(services)} services"
            raise self._not_found(
                f"no trace with request id {request_id} in Jaeger at {self._url} ({where})",
                by_request=True,
            )
        return found

    async def _services(self) -> list[str]:
        """Every service the store lists: the UI API's list, else api_v3's."""
        try:
            return _names(await self._get("/api/services"), "data")
        except _UnavailableError:
            pass
        try:
            return _names(await self._get("/api/v3/services"), "services")
        except _UnavailableError:
            raise BackendError(
                f"Jaeger at {self._url} answers neither /api/services nor /api/v3/services; "
                "is it Jaeger's query service?"
            ) from None

    async def _each_service(
        self,
        services: Sequence[str],
        search: _Search,
        request_id: str,
        start: datetime,
        end: datetime,
    ) -> list[Trace]:
        """Run `search` for each service, a few at a time; the traces carrying the id."""
        slots = asyncio.Semaphore(_PARALLEL_SEARCHES)

        async def one(service: str) -> list[Span]:
            async with slots:
                spans: list[Span] = await search(service, request_id, start, end)
                return spans

        tasks = [asyncio.ensure_future(one(service)) for service in services]
        try:
            answers = await asyncio.gather(*tasks)
        except BaseException:
            # One failed (or the API is missing): the others' answers are not wanted.
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        # A trace whose spans of two services carry the id came in both answers: one trace.
        return _carrying(request_id, [span for spans in answers for span in spans])

    async def _whole(self, found: Trace) -> Trace:
        """The found trace again, from api_v3 by its id: OTLP JSON, as every store is read.

        A Jaeger without api_v3 has shown the whole trace already, in its UI model.
        """
        try:
            spans = _v3_spans(await self._get(f"/api/v3/traces/{found.trace_id}"))
        except _UnavailableError:
            return found
        for trace in group_traces(spans):
            if trace.trace_id == found.trace_id:
                return trace
        return found

    async def _v1_search(
        self, service: str, request_id: str, start: datetime, end: datetime
    ) -> list[Span]:
        response = await self._get(
            "/api/traces",
            {
                "service": service,
                "tags": json.dumps({REQUEST_ID_ATTRIBUTE: request_id}),
                "start": str(_microseconds(start)),
                "end": str(_microseconds(end)),
                "limit": str(_SEARCH_LIMIT),
            },
        )
        body = response.json()
        ui_answer = isinstance(body, dict) and ("data" in body or "errors" in body)
        if not ui_answer and response.status in (200, 404, 405, 501):
            # 404 from a router that lacks the route, or 200 with the UI's HTML page.
            raise _UnavailableError
        return _v1_spans(response)

    async def _v3_search(
        self, service: str, request_id: str, start: datetime, end: datetime
    ) -> list[Span]:
        response = await self._get(
            "/api/v3/traces",
            {
                "query.service_name": service,
                "query.attributes": json.dumps({REQUEST_ID_ATTRIBUTE: request_id}),
                "query.start_time_min": _rfc3339(start),
                "query.start_time_max": _rfc3339(end),
                "query.num_traces": str(_SEARCH_LIMIT),
            },
        )
        try:
            return _v3_spans(response)
        except _UnavailableError:
            raise BackendError(
                f"Jaeger at {self._url} serves neither /api/traces nor /api/v3/traces"
            ) from None

    async def _get(self, path: str, params: dict[str, str] | None = None) -> Response:
        return await get(self._session, self._url + path, params=params, store=_STORE)

    def _not_found(self, message: str, *, by_request: bool) -> TraceNotFoundError:
        reasons = [f"the spans went to another trace store than Jaeger at {self._url}"]
        if by_request:
            if self._service:
                reasons.append(
                    f"the request was served by another service than {self._service!r} "
                    "(leave out --service to search every service)"
                )
            reasons.append(
                f"it is older than the search window, the last {format_duration(self._lookback)} "
                "(widen it with --lookback)"
            )
        return TraceNotFoundError(message, tuple(reasons))


def _names(response: Response, key: str) -> list[str]:
    """Read a list of service names (`{"data": [...]}` or `{"services": [...]}`)."""
    body = response.json()
    if response.status == 200 and isinstance(body, dict) and isinstance(body.get(key), list):
        return sorted({str(name) for name in body[key] if name})
    if response.status in (200, 404, 405, 501):
        raise _UnavailableError
    raise BackendError(f"Jaeger answered HTTP {response.status} to a list of its services")


def _v3_spans(response: Response) -> list[Span]:
    """Read an api_v3 answer: spans, an empty list for "No traces found", or _UnavailableError."""
    body = response.json()
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        if response.status == 404:
            return []
        raise BackendError(
            f"Jaeger answered HTTP {response.status}: {shown(str(body['error'].get('message')))}"
        )
    if response.status == 200 and isinstance(body, dict) and isinstance(body.get("result"), dict):
        try:
            return list(parse_resource_spans(body["result"].get("resourceSpans") or []))
        except ValueError as error:
            raise BackendError(f"Jaeger api_v3 answer is not OTLP JSON: {error}") from None
    if response.status in (200, 404, 405, 501):
        # 404 from a router that lacks the route, or 200 with the UI's HTML page.
        raise _UnavailableError
    raise BackendError(f"Jaeger answered HTTP {response.status} to an api_v3 request")


def _v1_spans(response: Response) -> list[Span]:
    """Read an `/api/traces` answer (Jaeger's UI model: times in microseconds)."""
    body = response.json()
    if response.status == 404:
        return []
    if response.status != 200 or not isinstance(body, dict):
        errors = body.get("errors") if isinstance(body, dict) else None
        detail = ""
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            detail = f": {shown(str(errors[0].get('msg')))}"
        raise BackendError(f"Jaeger answered HTTP {response.status}{detail}")
    try:
        return list(_ui_spans(body.get("data") or []))
    except (ValueError, TypeError, KeyError, AttributeError) as error:
        raise BackendError(f"Jaeger /api/traces answer has an unexpected shape: {error}") from None


def _ui_spans(traces: list[Any]) -> Iterator[Span]:
    for trace in traces:
        processes = trace.get("processes") or {}
        for raw in trace.get("spans") or []:
            tags: dict[str, AttributeValue] = {
                str(tag["key"]): tag.get("value") for tag in raw.get("tags") or []
            }
            process = raw.get("process") or processes.get(raw.get("processID"), {})
            parent = next(
                (
                    ref["spanID"]
                    for ref in raw.get("references") or []
                    if ref.get("refType") == "CHILD_OF" and ref.get("traceID") == raw["traceID"]
                ),
                raw.get("parentSpanID") or None,
            )
            start_ns = int(raw["startTime"]) * 1000
            kind = tags.get("span.kind")
            yield Span(
                trace_id=_hex(raw["traceID"], 32),
                span_id=_hex(raw["spanID"], 16),
                parent_span_id=_hex(parent, 16) if parent else None,
                name=str(raw.get("operationName", "")),
                start_ns=start_ns,
                end_ns=start_ns + int(raw.get("duration", 0)) * 1000,
                status=_ui_status(tags),
                status_message=str(tags.get("otel.status_description") or ""),
                kind=kind.upper() if isinstance(kind, str) else None,
                service=process.get("serviceName"),
                attributes={k: v for k, v in tags.items() if k not in _FIELD_TAGS},
            )


def _ui_status(tags: dict[str, AttributeValue]) -> str:
    code = tags.get("otel.status_code")
    if isinstance(code, str) and code:
        return code.upper()
    return "ERROR" if tags.get("error") in (True, "true") else "UNSET"


def _hex(value: object, width: int) -> str:
    """Normalise a UI-model id: Jaeger drops the zero high half of a 128-bit trace id."""
    text = str(value).lower()
    int(text, 16)  # ValueError for anything but hex
    return text.zfill(width)


def _carrying(request_id: str, spans: list[Span]) -> list[Trace]:
    return [
        trace
        for trace in group_traces(spans)
        if any(span.request_id == request_id for span in trace.spans)
    ]


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _microseconds(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000)
