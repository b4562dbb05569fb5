"""The plain way: a middleware, the record factory and the access logger, nothing else."""

import logging
import os

from aiohttp import web

from otel_reqid_logging import (
    LOG_FORMAT,
    RequestIdAccessLogger,
    RequestIdMiddleware,
    install_record_factory,
)

log = logging.getLogger("shop")


async def hello(request: web.Request) -> web.Response:
    log.info("saying hello")
    return web.Response(text="hello\n")


def main() -> None:
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    install_record_factory()
    app = web.Application(middlewares=[RequestIdMiddleware()])
    app.router.add_get("/", hello)
    web.run_app(
        app,
        port=int(os.environ.get("PORT", "8080")),
        access_log_class=RequestIdAccessLogger,
    )


if __name__ == "__main__":
    main()
