"""The usage example of aiohttp-request-id-logging 1.0.0, with only its import line changed.

Copied from that package's module docstring. To run under the tests, ``run_app`` also
reads HOST and PORT from the environment (unset, it listens where the original did).
"""
# fmt: off
# ruff: noqa: E501, I001  (kept as the ancestor wrote it: its line lengths, its import order)
# mypy: disable-error-code="no-untyped-def"

from os import environ

from aiohttp.web import Application, Response, RouteTableDef, run_app
from logging import DEBUG, basicConfig
from otel_reqid_logging.compat import (
    setup_logging_request_id_prefix,
    RequestIdMiddleware,
    RequestIdAccessLogger,
)

routes = RouteTableDef()

@routes.get('/')
async def hello(request):
    return Response(text="Hello, world!")

basicConfig(
    level=DEBUG,
    format='%(asctime)s [%(threadName)s] %(name)-37s %(levelname)5s: %(requestIdPrefix)s%(message)s')

setup_logging_request_id_prefix()

app = Application(middlewares=[RequestIdMiddleware()])
app.router.add_routes(routes)

run_app(app, access_log_class=RequestIdAccessLogger, host=environ.get("HOST"), port=int(environ.get("PORT", "8080")))
