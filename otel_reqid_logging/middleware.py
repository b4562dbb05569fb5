"""The aiohttp middleware: one SERVER span per request, its ids on the request and in context."""

from __future__ import annotations

import asyncio
import logging
import random

from aiohttp import web
from aiohttp.typedefs import Handler
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagate import extract
from opentelemetry.trace import (
    INVALID_SPAN_ID,
    INVALID_TRACE_ID,
    NonRecordingSpan,
    NoOpTracerProvider,
    ProxyTracerProvider,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
)

from . import sentry as _sentry
from ._context import (
    REQUEST_ID_KEY,
    REQUEST_IDS_KEY,
    REQUEST_OTEL_CONTEXT_KEY,
    RequestIds,
    _ids,
    request_id,
)
from ._ids import (
    DEFAULT_ID_LENGTH,
    MAX_ID_LENGTH,
    MAX_INCOMING_ID_LENGTH,
    MIN_ID_LENGTH,
    is_acceptable_request_id,
    request_id_from_span_id,
)
from ._server_span import (
    HEADERS_GETTER,
    is_server_span_of_request,
    request_attributes,
    route_of,
    span_name,
)
from ._version import __version__

__all__ = ["DEFAULT_HEADER_NAME", "RequestIdMiddleware"]

DEFAULT_HEADER_NAME = "X-Request-ID"

_logger = logging.getLogger(__name__)
_random_bits = random.getrandbits
# Providers whose tracers never record: the API's default, before any SDK is set up.
_NOTHING_RECORDS = (ProxyTracerProvider, NoOpTracerProvider)
_NO_PROVIDER = ProxyTracerProvider()
_UNKNOWN = object()


class RequestIdMiddleware:
    """aiohttp middleware giving every request a short request id derived from its span.

    It reuses the SERVER span an outer tracing middleware already started for the
    request, or starts one itself; then it stores the ids on the request, in
    ContextVars for the log record factory, on the span (``request.id``) and in the
    response header. Added twice, or to nested applications, it works once per request.
    """

    __middleware_version__ = 1  # what ``@web.middleware`` marks: the new-style signature

    def __init__(
        self,
        *,
        tracer_provider: trace.TracerProvider | None = None,
        header_name: str | None = DEFAULT_HEADER_NAME,
        id_length: int = DEFAULT_ID_LENGTH,
        adopt_incoming_id: bool = False,
        incoming_header_name: str | None = None,
        max_incoming_id_length: int = MAX_INCOMING_ID_LENGTH,
        sentry: bool | None = None,
    ) -> None:
        """Configure the middleware.

        ``header_name`` names the response header carrying the request id (None turns
        it off). With ``adopt_incoming_id`` a request id sent by the client in
        ``incoming_header_name`` (default: ``header_name``) is kept when it passes the
        allowlist; otherwise it is replaced and never logged. ``sentry`` tags Sentry
        events with the ids: True, False, or None to do so when sentry_sdk is
        initialized.
        """
        if not MIN_ID_LENGTH <= id_length <= MAX_ID_LENGTH:
            raise ValueError(
                f"id_length must be between {MIN_ID_LENGTH} and {MAX_ID_LENGTH}, got {id_length}"
            )
        if not 1 <= max_incoming_id_length <= 1024:
            raise ValueError(
                f"max_incoming_id_length must be between 1 and 1024, got {max_incoming_id_length}"
            )
        if adopt_incoming_id and not (incoming_header_name or header_name):
            raise ValueError("adopt_incoming_id needs incoming_header_name or header_name")
        self.header_name = header_name
        self.id_length = id_length
        self.adopt_incoming_id = adopt_incoming_id
        self.incoming_header_name = incoming_header_name or header_name
        self.max_incoming_id_length = max_incoming_id_length
        self._provider = tracer_provider
        self._tracer = trace.get_tracer(__name__, __version__, tracer_provider)
        self._sentry_scope = _sentry.scope_factory(sentry)
        self._global_provider: trace.TracerProvider | None = None
        self._named_provider: object = None
        self._service_name = ""
        # Switched off by the instrumentor when an app it wired is uninstrumented while
        # running: aiohttp's middleware list cannot change once the app is frozen.
        self.enabled = True

    def __repr__(self) -> str:
        return f"<RequestIdMiddleware header_name={self.header_name!r} id_length={self.id_length}>"

    async def __call__(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Run one request inside its span and its ids."""
        if self._passes_through(request):
            return await handler(request)

        provider = self._current_provider()
        otel_current = otel_context.get_current()
        current = trace.get_current_span(otel_current)
        own_span: Span | None = None
        otel_token: object = None
        if is_server_span_of_request(current):
            span = current
            request_context = otel_current
        else:
            span = own_span = self._start_span(request, provider)
            request_context = trace.set_span_in_context(span, otel_current)
            otel_token = otel_context.attach(request_context)

        ids = self._ids_for(request, span, provider)
        request[REQUEST_IDS_KEY] = ids
        request[REQUEST_ID_KEY] = ids.request_id
        # For the access line, which aiohttp writes after this returns.
        request[REQUEST_OTEL_CONTEXT_KEY] = request_context
        if span.is_recording():
            span.set_attribute("request.id", ids.request_id)
        ids_token = _ids.set(ids)
        request_id_token = request_id.set(ids.request_id)
        try:
            scope = None if self._sentry_scope is None else self._sentry_scope(ids)
            if scope is None:
                response = await self._handle(request, handler, span, own_span)
            else:
                with scope:
                    response = await self._handle(request, handler, span, own_span)
        finally:
            request_id.reset(request_id_token)
            _ids.reset(ids_token)
            if own_span is not None:
                own_span.end()
                otel_context.detach(otel_token)  # type: ignore[arg-type]
        self._add_header(response, ids.request_id)
        return response

    def _passes_through(self, request: web.Request) -> bool:
        """Tell whether this middleware is off, or another one already runs the request."""
        # Our ids are in context only inside a request that a RequestIdMiddleware already
        # handles, so most requests skip the lookup in the request (a raised KeyError).
        return not self.enabled or (_ids.get() is not None and REQUEST_IDS_KEY in request)

    async def _handle(
        self, request: web.Request, handler: Handler, span: Span, own_span: Span | None
    ) -> web.StreamResponse:
        """Call the handler; turn an unhandled exception into a logged 500 response."""
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            # Only what an HTTPException has in aiohttp 4 too, where it is no Response.
            if own_span is not None:
                _set_status_code(own_span, exc.status_code)
            if self.header_name is not None:
                exc.headers.setdefault(self.header_name, request[REQUEST_ID_KEY])
            raise
        except asyncio.CancelledError:
            if own_span is not None and own_span.is_recording():
                own_span.set_attribute("error.type", "cancelled")
            raise
        except Exception as exc:
            # Logged here, not by aiohttp, so that the traceback line carries the ids.
            _logger.exception("Unhandled exception in %s %s", request.method, request.raw_path)
            if own_span is not None:
                _set_status_code(own_span, 500)
            if span.is_recording():
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
                span.set_attribute("error.type", type(exc).__qualname__)
            if _response_started(request):
                # The handler had started its own response: a 500 can no longer be sent.
                # Re-raised, the exception makes aiohttp drop the connection.
                raise
            return web.Response(status=500, text="500 Internal Server Error\n")
        if own_span is not None:
            _set_status_code(own_span, response.status)
        return response

    def _start_span(self, request: web.Request, provider: trace.TracerProvider) -> Span:
        """Start this request's SERVER span, or make up its ids when nothing records."""
        parent = extract(request, getter=HEADERS_GETTER)
        if isinstance(provider, _NOTHING_RECORDS):
            # No SDK: a tracer would only hand back the caller's span, so the name and
            # the attributes it would drop are not even built.
            context = trace.get_current_span(parent).get_span_context()
        else:
            route = route_of(request)
            span = self._tracer.start_span(
                span_name(request, route),
                context=parent,
                kind=SpanKind.SERVER,
                attributes=request_attributes(request, route),
                record_exception=False,
                set_status_on_exception=False,
            )
            context = span.get_span_context()
            if context.is_valid and not context.is_remote:
                return span
        # Nothing records: the API hands back the caller's context (or nothing). The
        # request still gets ids of its own, continuing the caller's trace if there is one.
        trace_id = context.trace_id if context.is_valid else _new_id(128, INVALID_TRACE_ID)
        return NonRecordingSpan(
            SpanContext(
                trace_id=trace_id,
                span_id=_new_id(64, INVALID_SPAN_ID),
                is_remote=False,
                trace_flags=context.trace_flags,
                trace_state=context.trace_state,
            )
        )

    def _ids_for(
        self, request: web.Request, span: Span, provider: trace.TracerProvider
    ) -> RequestIds:
        """Build the ids of this request from its span (and an accepted incoming id)."""
        context = span.get_span_context()
        short_id = None
        if self.adopt_incoming_id:
            incoming = request.headers.get(self.incoming_header_name)  # type: ignore[arg-type]
            if incoming is not None and is_acceptable_request_id(
                incoming, self.max_incoming_id_length
            ):
                short_id = incoming
        if short_id is None:
            short_id = request_id_from_span_id(context.span_id, self.id_length)
        return RequestIds(
            request_id=short_id,
            trace_id=context.trace_id,
            span_id=context.span_id,
            sampled=context.trace_flags.sampled and span.is_recording(),
            sampled_flag=context.trace_flags.sampled,
            service_name=self._service_name_of(provider),
        )

    def _current_provider(self) -> trace.TracerProvider:
        """Return the tracer provider that serves requests now.

        Without an explicit one (or with the API's proxy) that is the global provider,
        which the API lets be set only once: as soon as it is set it is kept.
        """
        provider = self._global_provider or self._provider
        if provider is None or isinstance(provider, ProxyTracerProvider):
            if getattr(trace, "_TRACER_PROVIDER", _UNKNOWN) is None:
                # Not set yet. trace.get_tracer_provider() would say so too, but only
                # after testing os.environ for a provider to load (~3.7 µs a request
                # here); that test already ran when __init__ called trace.get_tracer().
                return _NO_PROVIDER
            provider = trace.get_tracer_provider()
            if not isinstance(provider, ProxyTracerProvider):
                self._global_provider = provider
        return provider

    def _service_name_of(self, provider: trace.TracerProvider) -> str:
        """Return ``service.name`` of the tracer provider, looked up once per provider."""
        if provider is not self._named_provider:
            resource = getattr(provider, "resource", None)
            attributes = getattr(resource, "attributes", None) or {}
            self._service_name = str(attributes.get("service.name", ""))
            self._named_provider = provider
        return self._service_name

    async def on_response_prepare(
        self, request: web.BaseRequest, response: web.StreamResponse
    ) -> None:
        """Send the header on responses prepared inside the handler (streams, WebSockets).

        An ``on_response_prepare`` signal handler; ``instrument_app`` registers it.
        """
        ids = request.get(REQUEST_IDS_KEY)
        name = self.header_name
        # `response.prepared` is already true here, but the headers are not sent yet.
        if ids is not None and self.enabled and name is not None and name not in response.headers:
            response.headers[name] = ids.request_id

    def _add_header(self, response: web.StreamResponse, short_id: str) -> None:
        """Put the request id header on a response whose headers can still change."""
        name = self.header_name
        if name is not None and not response.prepared:
            response.headers.setdefault(name, short_id)


def _response_started(request: web.Request) -> bool:
    """Tell whether the handler had begun sending a response of its own."""
    # An int check, not only a comparison: a request made with aiohttp's
    # make_mocked_request has a Mock for a writer.
    size = request.writer.output_size
    return isinstance(size, int) and size > 0


def _set_status_code(span: Span, status: int) -> None:
    """Record the response status on our own span; 5xx marks a server span as failed."""
    if not span.is_recording():
        return
    span.set_attribute("http.response.status_code", status)
    if status >= 500:
        span.set_status(Status(StatusCode.ERROR))
        span.set_attribute("error.type", str(status))


def _new_id(bits: int, invalid: int) -> int:
    """Return a random id of ``bits`` bits that is not the all-zero invalid id."""
    value = _random_bits(bits)
    while value == invalid:
        value = _random_bits(bits)
    return value
