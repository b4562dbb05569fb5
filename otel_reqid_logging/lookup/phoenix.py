"""Arize Phoenix, through its REST API `GET /v1/projects/{project}/spans`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote

import aiohttp

from ._errors import BackendError, TraceNotFoundError
from ._http import get
from ._model import REQUEST_ID_ATTRIBUTE, Span, Trace, group_traces
from ._query import shown
from ._window import format_duration

__all__ = ["DEFAULT_PHOENIX_PROJECT", "DEFAULT_PHOENIX_URL", "PhoenixBackend"]

DEFAULT_PHOENIX_URL = "http://localhost:6006"
DEFAULT_PHOENIX_PROJECT = "default"
_STORE = "Phoenix"
_PAGE_SIZE = 1000  # the largest `limit` Phoenix accepts
_MAX_PAGES = 20
_MAX_TRACES = 10
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class PhoenixBackend:
    """Find traces among the spans of one Phoenix project."""

    def __init__(
        self,
        *,
        session: aiohttp.ClientSession,
        url: str = DEFAULT_PHOENIX_URL,
        project: str = DEFAULT_PHOENIX_PROJECT,
        lookback: timedelta = timedelta(hours=24),
    ) -> None:
        self._session = session
        self._url = url.rstrip("/")
        self._project = project
        self._lookback = lookback

    async def by_trace_id(self, trace_id: str) -> Trace:
        """Fetch every span of `trace_id`."""
        spans = await self._spans([("trace_id", trace_id)])
        if not spans:
            raise self._not_found(
                f"no span of trace {trace_id} in Phoenix project", by_request=False
            )
        return group_traces(spans)[0]

    async def by_request_id(self, request_id: str) -> list[Trace]:
        """Find the spans that carry `request.id`, then fetch their whole traces."""
        start = datetime.now(timezone.utc) - self._lookback
        # Phoenix JSON-parses the value after the colon: quoting keeps an id such as
        # `12345` or `true` a string, which is what the span attribute holds.
        matches = await self._spans(
            [
                ("attribute", f"{REQUEST_ID_ATTRIBUTE}:{json.dumps(request_id)}"),
                ("start_time", start.strftime("%Y-%m-%dT%H:%M:%S.%fZ")),
            ]
        )
        trace_ids = list(dict.fromkeys(span.trace_id for span in matches))[:_MAX_TRACES]
        if not trace_ids:
            raise self._not_found(
                f"no span with request id {request_id} in Phoenix project", by_request=True
            )
        return group_traces(await self._spans([("trace_id", t) for t in trace_ids]))

    async def _spans(self, params: list[tuple[str, str]]) -> list[Span]:
        """Read all pages of a span query (bounded), as Spans."""
        url = f"{self._url}/v1/projects/{quote(self._project, safe='')}/spans"
        spans: list[Span] = []
        cursor: str | None = None
        for _ in range(_MAX_PAGES):
            page = [*params, ("limit", str(_PAGE_SIZE))]
            if cursor:
                page.append(("cursor", cursor))
            response = await get(self._session, url, params=page, store=_STORE)
            if response.status == 404:
                raise TraceNotFoundError(
                    f"Phoenix at {self._url} has no project {self._project!r}",
                    (
                        "the spans went to another project: pass --phoenix-project "
                        "(Phoenix reads it from resource attribute openinference.project.name)",
                    ),
                )
            body = response.json()
            if response.status != 200 or not isinstance(body, dict):
                raise BackendError(
                    f"Phoenix answered HTTP {response.status}: {shown(response.text[:200])}"
                )
            try:
                spans.extend(_phoenix_spans(body.get("data") or []))
            except (ValueError, TypeError, KeyError, AttributeError) as error:
                raise BackendError(f"Phoenix answer has an unexpected shape: {error}") from None
            cursor = body.get("next_cursor")
            if not cursor:
                break
        return spans

    def _not_found(self, message: str, *, by_request: bool) -> TraceNotFoundError:
        reasons = [
            f"the spans went to another Phoenix project than {self._project!r} "
            "(--phoenix-project) or to another trace store",
        ]
        if by_request:
            reasons.append(
                f"it is older than the search window, the last {format_duration(self._lookback)} "
                "(widen it with --lookback)"
            )
        return TraceNotFoundError(f"{message} {self._project!r} at {self._url}", tuple(reasons))


def _phoenix_spans(raw_spans: list[Any]) -> Iterator[Span]:
    """Convert Phoenix's span JSON; its `span_kind` is OpenInference's, not OpenTelemetry's."""
    for raw in raw_spans:
        context = raw["context"]
        yield Span(
            trace_id=str(context["trace_id"]).lower(),
            span_id=str(context["span_id"]).lower(),
            parent_span_id=raw.get("parent_id") or None,
            name=str(raw.get("name", "")),
            start_ns=_nanoseconds(raw["start_time"]),
            end_ns=_nanoseconds(raw.get("end_time") or raw["start_time"]),
            status=str(raw.get("status_code") or "UNSET"),
            status_message=str(raw.get("status_message") or ""),
            attributes=dict(raw.get("attributes") or {}),
        )


def _nanoseconds(text: str) -> int:
    # Python 3.10's fromisoformat does not take the "Z" suffix.
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return (moment - _EPOCH) // timedelta(microseconds=1) * 1000
