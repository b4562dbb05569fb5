"""HTTP server metrics of the requests whose SERVER span this library starts.

The two instruments of the stable HTTP semantic conventions, with the names, units,
attributes and bucket boundaries OpenTelemetry's aiohttp-server instrumentation uses, so
that switching from it to this library's own span keeps every dashboard working:
``http.server.request.duration`` (histogram, seconds) and ``http.server.active_requests``
(up-down counter). Nothing is recorded until a meter provider is there: the explicit
``meter_provider`` option, or the global one once the application sets it.
"""

from __future__ import annotations

from time import perf_counter
from typing import Any

from opentelemetry import metrics as otel_metrics
from opentelemetry.metrics import Histogram, MeterProvider, NoOpMeterProvider, UpDownCounter

from ._version import __version__

__all__ = ["DURATION_BUCKETS", "Measurement", "MetricsSource", "ServerMetrics"]

# The semantic conventions' advice for http.server.request.duration, in seconds.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)
# The schema of the stable HTTP conventions, as OpenTelemetry's instrumentations announce it.
_SCHEMA_URL = "https://opentelemetry.io/schemas/1.21.0"
_METER_NAME = "otel_reqid_logging"
_UNKNOWN = object()


class ServerMetrics:
    """The two HTTP server instruments of one meter provider."""

    __slots__ = ("_active_add", "_duration_record")

    def __init__(self, provider: MeterProvider) -> None:
        """Create the instruments (once per provider, never per request)."""
        meter = provider.get_meter(_METER_NAME, __version__, schema_url=_SCHEMA_URL)
        duration: Histogram = meter.create_histogram(
            "http.server.request.duration",
            unit="s",
            description="Duration of HTTP server requests.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        active: UpDownCounter = meter.create_up_down_counter(
            "http.server.active_requests",
            unit="{request}",
            description="Number of active HTTP server requests.",
        )
        # Bound once: the hot path calls them twice and once per request.
        self._duration_record = duration.record
        self._active_add = active.add

    def start(self, method: str, scheme: str, route: str, version: str) -> Measurement:
        """Count a request as active and start timing it."""
        active = {"http.request.method": method, "url.scheme": scheme}
        self._active_add(1, active)
        return Measurement(self, active, route, version)


class Measurement:
    """One request being measured: what its duration point will carry."""

    __slots__ = ("_active", "_metrics", "_route", "_start", "_version", "error_type", "status")

    def __init__(
        self, metrics: ServerMetrics, active: dict[str, str], route: str, version: str
    ) -> None:
        self._metrics = metrics
        self._active = active
        self._route = route
        self._version = version
        #: The response status, once known; None when the request ended without one.
        self.status: int | None = None
        #: ``error.type`` of a failed request (a 5xx status, an exception's class name).
        self.error_type: str | None = None
        self._start = perf_counter()

    def end(self) -> None:
        """Record the request's duration and count it as no longer active."""
        duration = perf_counter() - self._start
        attributes: dict[str, Any] = dict(self._active)
        attributes["network.protocol.version"] = self._version
        if self._route:
            attributes["http.route"] = self._route
        if self.status is not None:
            attributes["http.response.status_code"] = self.status
        if self.error_type is not None:
            attributes["error.type"] = self.error_type
        metrics = self._metrics
        metrics._duration_record(max(duration, 0.0), attributes)
        metrics._active_add(-1, self._active)


def _global_provider_set() -> bool:
    """Tell whether the application has set the global meter provider.

    ``metrics.get_meter_provider()`` would say so too, but only after looking for a
    provider to load in os.environ, every time it is called while none is set.
    """
    internal = getattr(otel_metrics, "_internal", None)
    found = getattr(internal, "_METER_PROVIDER", _UNKNOWN)
    if found is _UNKNOWN:
        return not type(otel_metrics.get_meter_provider()).__name__.startswith("_Proxy")
    return found is not None


class MetricsSource:
    """Finds the instruments to record with: the explicit provider's, or the global one's."""

    __slots__ = ("_explicit", "_metrics")

    def __init__(self, meter_provider: MeterProvider | None) -> None:
        """Keep ``meter_provider``; None follows the global provider once it is set."""
        self._explicit = meter_provider is not None
        self._metrics: ServerMetrics | None = None
        if meter_provider is not None and not isinstance(meter_provider, NoOpMeterProvider):
            self._metrics = ServerMetrics(meter_provider)

    def get(self) -> ServerMetrics | None:
        """Return the instruments, or None while nothing would record."""
        found = self._metrics
        if found is not None or self._explicit:
            return found
        if not _global_provider_set():
            return None
        provider = otel_metrics.get_meter_provider()
        if isinstance(provider, NoOpMeterProvider):
            self._explicit = True  # set once and for all: nothing will ever record
            return None
        self._metrics = found = ServerMetrics(provider)
        return found
