"""Programmatic setup: the instrumentor on one app, spans to the local file."""

import logging
import os

from aiohttp import web

from otel_reqid_logging import LOG_FORMAT, RequestIdInstrumentor
from otel_reqid_logging.export import configure_tracing

log = logging.getLogger("shop")


async def hello(request: web.Request) -> web.Response:
    log.info("saying hello")
    return web.Response(text="hello\n")


def main() -> None:
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    provider = configure_tracing(service_name="shop")  # OTLP if configured, else spans.jsonl
    app = web.Application()
    app.router.add_get("/", hello)
    RequestIdInstrumentor().instrument_app(app, tracer_provider=provider)
    try:
        web.run_app(app, port=int(os.environ.get("PORT", "8080")))
    finally:
        provider.shutdown()


if __name__ == "__main__":
    main()
