"""A loopback OTLP/HTTP log receiver that keeps what it is sent, for tests to read.

It stands in for a log store (Loki, a vendor's intake, ...) behind the collector's logs
pipeline: this machine runs none, and what the tests check is what the collector passes
on, which a real store would only index. It decodes the collector's requests with
OpenTelemetry's own protobuf classes, gzip included, as the OTLP/HTTP spec describes.
"""

from __future__ import annotations

import contextlib
import gzip
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

__all__ = ["LogRecordSeen", "OtlpLogsSink"]


def _plain(value: AnyValue) -> object:
    """An OTLP attribute value as the Python value it holds (scalars are all the tests use)."""
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


@dataclass(frozen=True)
class LogRecordSeen:
    """One log record as the log store received it."""

    body: str
    trace_id: str
    span_id: str
    severity: str
    attributes: dict[str, object]
    service: str | None


@dataclass
class OtlpLogsSink:
    """The records received so far, and the base URL to send more to."""

    url: str = ""
    records: list[LogRecordSeen] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def wait_for(
        self, matches: Callable[[LogRecordSeen], bool], *, timeout: float = 15.0
    ) -> list[LogRecordSeen]:
        """The records that match, once there is at least one; AssertionError after `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                found = [record for record in self.records if matches(record)]
            if found or time.monotonic() > deadline:
                assert found, f"no matching log record after {timeout} s; got {self.records!r}"
                return found
            time.sleep(0.1)

    def _add(self, request: ExportLogsServiceRequest) -> None:
        seen = []
        for resource_logs in request.resource_logs:
            resource = {a.key: a.value.string_value for a in resource_logs.resource.attributes}
            for scope_logs in resource_logs.scope_logs:
                for record in scope_logs.log_records:
                    seen.append(
                        LogRecordSeen(
                            body=record.body.string_value,
                            trace_id=record.trace_id.hex(),
                            span_id=record.span_id.hex(),
                            severity=record.severity_text,
                            attributes={a.key: _plain(a.value) for a in record.attributes},
                            service=resource.get("service.name"),
                        )
                    )
        with self._lock:
            self.records.extend(seen)

    @classmethod
    @contextlib.contextmanager
    def running(cls) -> Iterator[OtlpLogsSink]:
        """Serve on a free loopback port until the block ends."""
        sink = cls()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path != "/v1/logs":
                    self.send_error(404)
                    return
                message = ExportLogsServiceRequest()
                message.ParseFromString(body)
                sink._add(message)
                answer = ExportLogsServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: object) -> None:
                """Quiet: the test reads the records, not an access log."""

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        sink.url = f"http://127.0.0.1:{server.server_address[1]}"
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield sink
        finally:
            server.shutdown()
            server.server_close()
            thread.join()
