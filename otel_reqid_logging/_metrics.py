"""HTTP server metrics of the requests whose SERVER span this library starts.

The two instruments of the stable HTTP semantic conventions, with the names, units,
attributes and bucket boundaries OpenTelemetry's aiohttp-server instrumentation uses, so
that switching from it to this library's own span keeps every dashboard working:
``http.server.request.duration`` (histogram, seconds) and ``http.server.active_requests``
(up-down counter). Nothing is recorded until a meter provider is there: the explicit
``meter_provider`` option, or the global one once the application sets it.

The active-requests counter is an asynchronous (observable) up-down counter: requests
count themselves in a dict here, and the SDK reads the counts when it collects. Its
points are those of the synchronous counter, but a request costs a dict update instead
of two SDK measurements (each about as dear as the whole of this library's span work).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable
from time import perf_counter
from typing import Any

from opentelemetry import metrics as otel_metrics
from opentelemetry.metrics import (
    CallbackOptions,
    Histogram,
    MeterProvider,
    NoOpMeterProvider,
    Observation,
)

from ._version import __version__

__all__ = ["DURATION_BUCKETS", "Measurement", "MetricsSource", "ServerMetrics"]

# The semantic conventions' advice for http.server.request.duration, in seconds.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)
# The schema of the stable HTTP conventions, as OpenTelemetry's instrumentations announce it.
_SCHEMA_URL = "https://opentelemetry.io/schemas/1.21.0"
_METER_NAME = "otel_reqid_logging"
_UNKNOWN = object()


class _ActiveRequests:
    """Requests in progress per (method, scheme), read by the SDK when it collects."""

    __slots__ = ("_counts", "_lock")

    def __init__(self) -> None:
        self._counts: dict[tuple[str, str], int] = {}
        # Event loops in several threads may share one provider's counts.
        self._lock = threading.Lock()

    def add(self, key: tuple[str, str], delta: int) -> None:
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + delta

    def observe(self, options: CallbackOptions) -> Iterable[Observation]:
        """The callback of the observable counter: one point per attribute set seen."""
        with self._lock:
            counts = list(self._counts.items())
        return [
            Observation(count, {"http.request.method": method, "url.scheme": scheme})
            for (method, scheme), count in counts
        ]


class ServerMetrics:
    """The two HTTP server instruments of one meter provider."""

    __slots__ = ("__weakref__", "_duration_record", "active")

    def __init__(self, provider: MeterProvider) -> None:
        """Create the instruments (once per provider, never per request)."""
        meter = provider.get_meter(_METER_NAME, __version__, schema_url=_SCHEMA_URL)
        duration: Histogram = meter.create_histogram(
            "http.server.request.duration",
            unit="s",
            description="Duration of HTTP server requests.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.active = _ActiveRequests()
        meter.create_observable_up_down_counter(
            "http.server.active_requests",
            callbacks=[self.active.observe],
            unit="{request}",
            description="Number of active HTTP server requests.",
        )
        # Bound once: the hot path calls it once per request.
        self._duration_record = duration.record

    def start(self, method: str, scheme: str, route: str, version: str) -> Measurement:
        """Count a request as active and start timing it."""
        key = (method, scheme)
        self.active.add(key, 1)
        return Measurement(self, key, route, version)


# One set of instruments per provider, whichever middlewares share it: a second
# observable counter of the same name would not be read.
_by_provider: weakref.WeakKeyDictionary[MeterProvider, ServerMetrics] = weakref.WeakKeyDictionary()
_by_provider_lock = threading.Lock()


def _metrics_of(provider: MeterProvider) -> ServerMetrics:
    with _by_provider_lock:
        found = _by_provider.get(provider)
        if found is None:
            found = _by_provider[provider] = ServerMetrics(provider)
        return found


class Measurement:
    """One request being measured: what its duration point will carry."""

    __slots__ = ("_key", "_metrics", "_route", "_start", "_version", "error_type", "status")

    def __init__(
        self, metrics: ServerMetrics, key: tuple[str, str], route: str, version: str
    ) -> None:
        self._metrics = metrics
        self._key = key
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
        method, scheme = key = self._key
        attributes: dict[str, Any] = {
            "http.request.method": method,
            "url.scheme": scheme,
            "network.protocol.version": self._version,
        }
        if self._route:
            attributes["http.route"] = self._route
        if self.status is not None:
            attributes["http.response.status_code"] = self.status
        if self.error_type is not None:
            attributes["error.type"] = self.error_type
        metrics = self._metrics
        metrics._duration_record(max(duration, 0.0), attributes)
        metrics.active.add(key, -1)


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
            self._metrics = _metrics_of(meter_provider)

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
        self._metrics = found = _metrics_of(provider)
        return found
