"""A busy trace store: many large traces over several services, sent to Jaeger as OTLP."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterator, Sequence

import aiohttp

__all__ = ["SERVICES", "build_requests", "fill"]

SERVICES = ("shop", "payment", "search", "mail", "auth")
# Traces per OTLP request: about 4,000 spans, well under the receiver's size limits.
_BATCH_TRACES = 20
_STORE_WAIT_S = 120.0


def _span_ids(rng: random.Random) -> Iterator[bytes]:
    while True:
        yield rng.getrandbits(64).to_bytes(8, "big")


def build_requests(
    *, traces: int, spans: int, services: Sequence[str], seed: int = 1
) -> tuple[list[bytes], list[dict[str, str]]]:
    """OTLP protobuf export requests holding the traces, and each trace's ids.

    A trace: the SERVER span of a request to one service (with its request id), three
    quarters of the spans as its children (database calls with a statement), then the
    SERVER span of the service it called (with that service's request id) and the rest
    as that span's children. Traces start over the last half hour, oldest first.
    """
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (  # noqa: PLC0415
        ExportTraceServiceRequest,
    )
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue  # noqa: PLC0415
    from opentelemetry.proto.resource.v1.resource_pb2 import Resource  # noqa: PLC0415
    from opentelemetry.proto.trace.v1 import trace_pb2  # noqa: PLC0415

    from otel_reqid_logging._ids import request_id_from_span_id  # noqa: PLC0415

    rng = random.Random(seed)  # noqa: S311 (made-up ids, no secret)
    ids = _span_ids(rng)
    now = time.time_ns()
    step = 30 * 60 * 10**9 // max(traces, 1)

    def attribute(key: str, value: str | int) -> KeyValue:
        if isinstance(value, int):
            return KeyValue(key=key, value=AnyValue(int_value=value))
        return KeyValue(key=key, value=AnyValue(string_value=value))

    def server(
        trace_id: bytes, span_id: bytes, parent: bytes, start: int, route: str
    ) -> trace_pb2.Span:
        request_id = request_id_from_span_id(int.from_bytes(span_id, "big"))
        return trace_pb2.Span(
            trace_id=trace_id,
            span_id=span_id,
            parent_span_id=parent,
            name=f"GET {route}",
            kind=trace_pb2.Span.SPAN_KIND_SERVER,
            start_time_unix_nano=start,
            end_time_unix_nano=start + 80_000_000,
            attributes=[
                attribute("request.id", request_id),
                attribute("http.request.method", "GET"),
                attribute("http.route", route),
                attribute("url.path", route.replace("{id}", str(rng.randrange(10**6)))),
                attribute("http.response.status_code", 200),
            ],
        )

    def child(trace_id: bytes, parent: bytes, start: int, number: int) -> trace_pb2.Span:
        return trace_pb2.Span(
            trace_id=trace_id,
            span_id=next(ids),
            parent_span_id=parent,
            name="SELECT items",
            kind=trace_pb2.Span.SPAN_KIND_CLIENT,
            start_time_unix_nano=start + number * 300_000,
            end_time_unix_nano=start + number * 300_000 + 250_000,
            attributes=[
                attribute("db.system.name", "postgresql"),
                attribute(
                    "db.query.text",
                    # A statement's text as an instrumentation records it; never run.
                    f"SELECT id, name, price, stock FROM items WHERE cart_id = {number} "  # noqa: S608
                    "AND deleted_at IS NULL ORDER BY position",
                ),
                attribute("db.response.returned_rows", number % 17),
            ],
        )

    requests: list[bytes] = []
    index: list[dict[str, str]] = []
    batch: dict[str, list[trace_pb2.Span]] = {}
    for number in range(traces):
        trace_id = rng.getrandbits(128).to_bytes(16, "big")
        start = now - (traces - number) * step
        first = services[number % len(services)]
        second = services[(number + 1) % len(services)]
        root_id, called_id = next(ids), next(ids)
        own = max(spans * 3 // 4 - 1, 0)
        first_spans = [server(trace_id, root_id, b"", start, "/orders/{id}")]
        first_spans += [child(trace_id, root_id, start, n) for n in range(own)]
        second_spans = [server(trace_id, called_id, root_id, start + 1_000_000, "/charges")]
        second_spans += [
            child(trace_id, called_id, start + 1_000_000, n) for n in range(spans - own - 2)
        ]
        batch.setdefault(first, []).extend(first_spans)
        batch.setdefault(second, []).extend(second_spans)
        index.append(
            {
                "trace_id": trace_id.hex(),
                "request_id": request_id_from_span_id(int.from_bytes(root_id, "big")),
                "service": first,
            }
        )
        if len(index) % _BATCH_TRACES == 0 or number == traces - 1:
            request = ExportTraceServiceRequest(
                resource_spans=[
                    trace_pb2.ResourceSpans(
                        resource=Resource(attributes=[attribute("service.name", name)]),
                        scope_spans=[trace_pb2.ScopeSpans(spans=members)],
                    )
                    for name, members in batch.items()
                ]
            )
            requests.append(request.SerializeToString())
            batch = {}
    return requests, index


async def fill(otlp_http: str, query_url: str, requests: list[bytes], last: str) -> None:
    """Send the export requests, then wait until Jaeger serves the last trace."""
    async with aiohttp.ClientSession() as session:
        for body in requests:
            async with session.post(
                f"{otlp_http}/v1/traces",
                data=body,
                headers={"Content-Type": "application/x-protobuf"},
            ) as answer:
                if answer.status != 200:
                    raise RuntimeError(f"Jaeger's OTLP receiver answered HTTP {answer.status}")
        deadline = time.monotonic() + _STORE_WAIT_S
        while True:
            async with session.get(f"{query_url}/api/v3/traces/{last}") as answer:
                if answer.status == 200:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError("Jaeger did not store the traces in time")
            await asyncio.sleep(0.2)
