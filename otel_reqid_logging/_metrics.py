"""HTTP server metrics of the requests whose SERVER span this library starts.

The instruments of OpenTelemetry's aiohttp-server instrumentation, in the semantic-
convention mode in force (``_semconv``): ``http.server.duration`` (histogram, integer
milliseconds) for the old conventions, ``http.server.request.duration`` (histogram,
seconds, the conventions' buckets) for the stable ones, both in ``http/dup``, and
``http.server.active_requests`` (up-down counter) in every mode, with their names,
units, descriptions, attributes and schema URLs. Nothing is recorded until a meter
provider is there: the explicit ``meter_provider`` option, or the global one once the
application sets it.

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

from ._semconv import SCHEMA_NEW, SCHEMA_OLD, Conventions
from ._version import __version__

__all__ = ["DURATION_BUCKETS", "Measurement", "MetricsSource", "ServerMetrics"]

# The semantic conventions' advice for http.server.request.duration, in seconds.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)
_METER_NAME = "otel_reqid_logging"
_UNKNOWN = object()

_Key = tuple[tuple[str, Any], ...]


class _ActiveRequests:
    """Requests in progress per attribute set, read by the SDK when it collects."""

    __slots__ = ("_counts", "_lock")

    def __init__(self) -> None:
        self._counts: dict[_Key, int] = {}
        # Event loops in several threads may share one provider's counts.
        self._lock = threading.Lock()

    def add(self, key: _Key, delta: int) -> None:
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + delta

    def observe(self, options: CallbackOptions) -> Iterable[Observation]:
        """The callback of the observable counter: one point per attribute set seen."""
        with self._lock:
            counts = list(self._counts.items())
        return [Observation(count, dict(key)) for key, count in counts]


class ServerMetrics:
    """The HTTP server instruments of one meter provider, in one convention mode."""

    __slots__ = (
        "__weakref__",
        "_active_names",
        "_new_names",
        "_new_record",
        "_old_names",
        "_old_record",
        "active",
    )

    def __init__(self, provider: MeterProvider, conventions: Conventions) -> None:
        """Create the instruments (once per provider, never per request)."""
        self._old_names = conventions.old_duration_names
        self._new_names = conventions.new_duration_names
        self._active_names = conventions.active_names
        # Bound once: the hot path calls them once per request.
        self._old_record = self._new_record = None
        meter = None
        if self._old_names:
            meter = provider.get_meter(_METER_NAME, __version__, schema_url=SCHEMA_OLD)
            old: Histogram = meter.create_histogram(
                "http.server.duration",
                unit="ms",
                description="Measures the duration of inbound HTTP requests.",
            )
            self._old_record = old.record
        if self._new_names:
            meter = provider.get_meter(_METER_NAME, __version__, schema_url=SCHEMA_NEW)
            new: Histogram = meter.create_histogram(
                "http.server.request.duration",
                unit="s",
                description="Duration of HTTP server requests.",
                explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
            )
            self._new_record = new.record
        self.active = _ActiveRequests()
        assert meter is not None  # every mode records one duration at least
        # On the stable conventions' meter when there is one, as OpenTelemetry does.
        meter.create_observable_up_down_counter(
            "http.server.active_requests",
            callbacks=[self.active.observe],
            unit="{request}",
            description="Number of active HTTP server requests.",
        )

    def start(self, attributes: dict[str, Any]) -> Measurement:
        """Count a request as active and start timing it; ``attributes``: the span's start ones."""
        key = tuple([(name, attributes[name]) for name in self._active_names if name in attributes])
        self.active.add(key, 1)
        return Measurement(self, key, attributes)

    def record(self, duration: float, start: dict[str, Any], outcome: dict[str, Any]) -> None:
        """Record one request's duration (seconds) with the attributes of its start and end."""
        if self._old_record is not None:
            self._old_record(
                max(round(duration * 1000), 0), _point(self._old_names, start, outcome)
            )
        if self._new_record is not None:
            self._new_record(max(duration, 0.0), _point(self._new_names, start, outcome))


def _point(
    names: tuple[str, ...], start: dict[str, Any], outcome: dict[str, Any]
) -> dict[str, Any]:
    """The attributes of a duration point: ``names`` found at the start or in the outcome."""
    point = {}
    for name in names:
        if name in start:
            point[name] = start[name]
        elif name in outcome:
            point[name] = outcome[name]
    return point


# One set of instruments per provider, whichever middlewares share it: a second
# observable counter of the same name would not be read.
_by_provider: weakref.WeakKeyDictionary[MeterProvider, dict[Conventions, ServerMetrics]] = (
    weakref.WeakKeyDictionary()
)
_by_provider_lock = threading.Lock()


def _metrics_of(provider: MeterProvider, conventions: Conventions) -> ServerMetrics:
    with _by_provider_lock:
        modes = _by_provider.setdefault(provider, {})
        found = modes.get(conventions)
        if found is None:
            found = modes[conventions] = ServerMetrics(provider, conventions)
        return found


class Measurement:
    """One request being measured, from its start attributes to its duration point."""

    __slots__ = ("_key", "_metrics", "_start", "_started", "outcome")

    def __init__(self, metrics: ServerMetrics, key: _Key, attributes: dict[str, Any]) -> None:
        self._metrics = metrics
        self._key = key
        self._start = attributes
        #: What the request's end adds to the points (status code, ``error.type``).
        self.outcome: dict[str, Any] = {}
        self._started = perf_counter()

    def end(self) -> None:
        """Record the request's duration and count it as no longer active."""
        duration = perf_counter() - self._started
        metrics = self._metrics
        metrics.record(duration, self._start, self.outcome)
        metrics.active.add(self._key, -1)


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

    __slots__ = ("_conventions", "_explicit", "_metrics")

    def __init__(self, meter_provider: MeterProvider | None, conventions: Conventions) -> None:
        """Keep ``meter_provider``; None follows the global provider once it is set."""
        self._conventions = conventions
        self._explicit = meter_provider is not None
        self._metrics: ServerMetrics | None = None
        if meter_provider is not None and not isinstance(meter_provider, NoOpMeterProvider):
            self._metrics = _metrics_of(meter_provider, conventions)

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
        self._metrics = found = _metrics_of(provider, self._conventions)
        return found
