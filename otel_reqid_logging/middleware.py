"""The aiohttp middleware: one SERVER span per request, its ids on the request and in context."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from aiohttp import web
from aiohttp.typedefs import Handler
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.instrumentation.utils import is_http_instrumentation_enabled
from opentelemetry.trace import ProxyTracerProvider, Span

from . import sentry as _sentry
from ._context import (
    REQUEST_ID_KEY,
    REQUEST_IDS_KEY,
    REQUEST_OTEL_CONTEXT_KEY,
    RequestIds,
    _ids,
    request_id,
)
from ._error_line import register_carrier, watch_server_logger
from ._excluded import request_exclusion
from ._ids import is_acceptable_request_id, request_id_from_span_id
from ._options import DEFAULT_HEADER_NAME, MiddlewareOptions, Options, resolve_options
from ._otel_server import is_server_span_of_request
from ._response_headers import ResponseHeaders
from ._server_span import OwnSpan, ServerSpans

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["DEFAULT_HEADER_NAME", "RequestIdMiddleware"]

_NO_PROVIDER = ProxyTracerProvider()
_UNKNOWN = object()


class RequestIdMiddleware:
    """aiohttp middleware giving every request a short request id derived from its span.

    It reuses the SERVER span an outer tracing middleware already started for the
    request, or starts one itself; then it stores the ids on the request, in
    ContextVars for the log record factory, on the span (``request.id``) and in the
    response header. Added twice, or to nested applications, it works once per request.
    It changes nothing else: an exception from the handler goes on as it is, to outer
    middlewares, aiohttp and Sentry.
    """

    __middleware_version__ = 1  # what ``@web.middleware`` marks: the new-style signature

    def __init__(self, **options: Unpack[MiddlewareOptions]) -> None:
        """Configure the middleware; docs/options.md describes each option.

        Environment variables (``OTEL_REQID_*``) give the defaults, as for the
        instrumentor; keyword options override them. OpenTelemetry's excluded-URL
        variables (``OTEL_PYTHON_AIOHTTP_SERVER_EXCLUDED_URLS`` /
        ``OTEL_PYTHON_EXCLUDED_URLS``) always apply, as to OpenTelemetry's
        instrumentations: no span, and so no ids and no header.
        ``header_name`` names the response header carrying the request id (None turns
        it off). ``meter_provider`` records the HTTP server metrics of the requests whose
        span this middleware starts (default: the global provider, once it is set).
        With ``adopt_incoming_id`` a request id sent by the client in
        ``incoming_header_name`` (default: ``header_name``) is kept when it passes the
        allowlist; otherwise it is replaced and never logged. That lets the client choose
        its id (and reuse another request's), so turn it on only behind a trusted proxy
        that sets the header itself. ``sentry`` tags Sentry
        events with the ids: True, False, or None to do so when sentry_sdk is
        initialized. ``excluded_urls`` (regexes) leaves matching requests alone (no
        span, no ids, no access line); ``traceresponse`` sends the W3C ``traceresponse``
        header. An exception from the handler is recorded on the span and goes on
        unchanged; for the header on the answer aiohttp then builds (and on streamed
        responses), register ``on_response_prepare`` on the app.
        """
        self._configure(resolve_options(options, middleware_only=True))

    @classmethod
    def _from_options(cls, options: Options) -> RequestIdMiddleware:
        """Build the middleware from options already resolved (by the instrumentor)."""
        middleware = cls.__new__(cls)
        middleware._configure(options)
        return middleware

    def _configure(self, options: Options) -> None:
        self.options = options
        # Copied out of `options`: the request path reads them on every request.
        self.header_name = options.header_name
        self.id_length = options.id_length
        self.adopt_incoming_id = options.adopt_incoming_id
        self.incoming_header_name = options.incoming_header_name or options.header_name
        self.max_incoming_id_length = options.max_incoming_id_length
        self._excludes = request_exclusion(options)
        self._headers = ResponseHeaders(
            request_id_header=options.header_name, traceresponse=options.traceresponse
        )
        self._provider = options.tracer_provider
        # The semantic-convention mode and the captured headers are read here, once.
        self._spans = ServerSpans(options.tracer_provider, options.meter_provider)
        self._sentry_scope = _sentry._scope_factory(options.sentry)
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
        own_span: OwnSpan | None = None
        otel_token: object = None
        if is_server_span_of_request(current, request):
            span = current
            request_context = otel_current
            ids = self._ids_for(request, span, provider)
            if span.is_recording():
                span.set_attribute("request.id", ids.request_id)
        else:
            # suppress_http_instrumentation() (or suppress_instrumentation()) in force:
            # no span and no metrics, as for OpenTelemetry's; the request still has ids.
            suppressed = bool(otel_current) and not is_http_instrumentation_enabled()
            span, own_span = self._spans.start(request, provider, suppressed)
            request_context = trace.set_span_in_context(span, otel_current)
            otel_token = otel_context.attach(request_context)
            ids = self._ids_for(request, span, provider)
            if own_span is not None:
                # It puts request.id on the span with the status, in one call at the end.
                own_span.request_id = ids.request_id

        request[REQUEST_IDS_KEY] = ids
        request[REQUEST_ID_KEY] = ids.request_id
        # For the access line, which aiohttp writes after this returns.
        request[REQUEST_OTEL_CONTEXT_KEY] = request_context
        # Records made there carry the request's own values without a span lookup.
        ids.context = request_context
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
            if otel_token is not None:
                otel_context.detach(otel_token)  # type: ignore[arg-type]
        self._add_header(response, ids, request)
        return response

    def _passes_through(self, request: web.Request) -> bool:
        """Tell whether to leave the request alone: off, handled already, or excluded."""
        # Our ids are in context only inside a request that a RequestIdMiddleware already
        # handles, so most requests skip the lookup in the request (a raised KeyError).
        if not self.enabled or (_ids.get() is not None and REQUEST_IDS_KEY in request):
            return True
        # An excluded request runs as if the library were off: nearly free.
        return self._excludes is not None and self._excludes(request)

    async def _handle(
        self, request: web.Request, handler: Handler, span: Span, own_span: OwnSpan | None
    ) -> web.StreamResponse:
        """Call the handler; note on the span how it went, and let any exception go on.

        An exception is aiohttp's (its 500 page, its 504 for a timeout, its error line),
        the outer middlewares' and Sentry's to handle, exactly as without this library.
        """
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            # Only what an HTTPException has in aiohttp 4 too, where it is no Response.
            if own_span is not None:
                own_span.responded(exc.status_code, exc)
            self._headers.write(exc.headers, request[REQUEST_IDS_KEY])
            raise
        except asyncio.CancelledError:
            if own_span is not None:
                own_span.cancelled()
            raise
        except Exception as exc:
            _failed(request, own_span, exc)
            raise
        if own_span is not None:
            try:
                status, headers = response.status, response.headers
            except AttributeError:
                # Not a response: aiohttp answers 500 and logs why.
                status, headers = 500, None
            own_span.responded(status, headers=headers)
        return response

    def _ids_for(
        self, request: web.Request, span: Span, provider: trace.TracerProvider
    ) -> RequestIds:
        """Build the ids of this request from its span (and an accepted incoming id)."""
        context = span.get_span_context()
        short_id = None
        if self.adopt_incoming_id:
            incoming = request.headers.get(self.incoming_header_name)  # type: ignore[arg-type]
            if incoming is not None:
                # HTTP's optional whitespace around a value; aiohttp before 3.14.4 keeps it.
                incoming = incoming.strip(" \t")
                if is_acceptable_request_id(incoming, self.max_incoming_id_length):
                    short_id = incoming
        span_id = context.span_id
        if short_id is None:
            short_id = request_id_from_span_id(span_id, self.id_length)
        sampled_flag = context.trace_flags.sampled
        return RequestIds(
            request_id=short_id,
            trace_id=context.trace_id,
            span_id=span_id,
            sampled=sampled_flag and span.is_recording(),
            sampled_flag=sampled_flag,
            service_name=self._service_name_of(provider),
            trace_flags=context.trace_flags,
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
                # after testing os.environ for a provider to load, on every request;
                # that test already ran when __init__ called trace.get_tracer().
                # A private name of OpenTelemetry: without it, the public call below.
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
        """Send the headers on responses prepared inside the handler (streams, WebSockets).

        An ``on_response_prepare`` signal handler; ``instrument_app`` registers it.
        """
        ids = request.get(REQUEST_IDS_KEY)
        # `response.prepared` is already true here, but the headers are not sent yet.
        if ids is not None and self.enabled:
            self._headers.write(response.headers, ids)

    def _add_header(
        self, response: web.StreamResponse, ids: RequestIds, request: web.Request | None = None
    ) -> None:
        """Put the request id header (and traceresponse) on a response not yet prepared."""
        try:
            prepared = response.prepared
        except AttributeError:
            # Not a response: aiohttp's own 500 follows, and gets the header from the
            # signal; the filter puts the ids on aiohttp's line about it.
            if request is not None:
                watch_server_logger(getattr(request, "protocol", None))
            return
        if not prepared:
            self._headers.write(response.headers, ids)


def _failed(request: web.Request, own_span: OwnSpan | None, exception: Exception) -> None:
    """Record an exception that escapes the handler on the request's span.

    Only on a span of our own, as OpenTelemetry's middleware records it (aiohttp, not the
    span, answers it: 500, or 504 for a timeout): an outer middleware's span sees the
    exception itself. The filter that puts the ids on aiohttp's error line is put on its
    logger here, the first time it is needed. It never raises: whatever happens here, the
    handler's exception goes on as it is.
    """
    try:
        watch_server_logger(getattr(request, "protocol", None))
        if own_span is not None:
            own_span.failed(exception)
    except Exception:  # noqa: S110
        pass  # the span misses what it could not take; the exception is not replaced


# aiohttp's error line finds the request's ids in the frame of __call__ (its local `ids`).
register_carrier(RequestIdMiddleware.__call__.__code__)
