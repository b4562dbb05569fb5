"""Sentry events and OpenTelemetry spans share one trace id, through Sentry's OTLPIntegration.

Needs ``pip install 'otel-reqid-logging[export,sentry]'``. Run it with your DSN:

    SENTRY_DSN=https://key@o0.ingest.sentry.io/0 python examples/sentry_otlp.py
    curl -i http://127.0.0.1:8080/fail

The error event in Sentry carries the tags ``request_id`` and ``trace_id`` of the log
line, and its trace is the OpenTelemetry trace, whose spans Sentry receives over OTLP.
"""

from __future__ import annotations

import logging
import os

import sentry_sdk
from aiohttp import web
from sentry_sdk.integrations.otlp import OTLPIntegration

from otel_reqid_logging import (
    LOG_FORMAT,
    RequestIdAccessLogger,
    RequestIdMiddleware,
    install_record_factory,
)


async def hello(request: web.Request) -> web.Response:
    sentry_sdk.capture_message("hello from a request")
    return web.Response(text="Hello, world!\n")


async def fail(request: web.Request) -> web.Response:
    raise RuntimeError("something broke")


def main() -> None:
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    install_record_factory()
    sentry_sdk.init(
        dsn=os.environ["SENTRY_DSN"],
        # OTLPIntegration sets up an OpenTelemetry SDK exporting spans to the OTLP
        # endpoint of this DSN, and makes events take their trace id from the current
        # OpenTelemetry span. Its own propagator reads only `sentry-trace` headers;
        # turned off, the W3C `traceparent` of callers keeps continuing their traces.
        # Leave traces_sample_rate unset: Sentry's own tracing would take precedence.
        # With capture_exceptions, an unhandled exception is captured where the
        # middleware records it on the request's span, so its event is on that trace too
        # (Sentry's aiohttp integration, outside every middleware, no longer sees the
        # span; its duplicate event is dropped).
        integrations=[OTLPIntegration(setup_propagator=False, capture_exceptions=True)],
    )
    middleware = RequestIdMiddleware()
    app = web.Application(middlewares=[middleware])
    # The X-Request-ID header on answers aiohttp makes itself (the 500 of /fail).
    app.on_response_prepare.append(middleware.on_response_prepare)
    app.router.add_get("/", hello)
    app.router.add_get("/fail", fail)
    web.run_app(
        app,
        host=os.environ.get("HOST", "127.0.0.1"),
        port=int(os.environ.get("PORT", "8080")),
        access_log_class=RequestIdAccessLogger,
    )


if __name__ == "__main__":
    main()
