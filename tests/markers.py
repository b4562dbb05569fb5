"""The ``external_tool`` marker, put on every test that starts an external program.

Such a test (Jaeger, the OpenTelemetry Collector, rotel, Phoenix) checks how that program
and this library meet over the wire; the program behaves the same whichever Python drives
the test, and the tests of the library's own side run without it. ``python3 dev.py matrix``
therefore runs the suite on the declared Pythons other than the primary one without these
tests (``-m "not external_tool"``), which keeps CI's time in bounds: the primary interpreter
runs all of them. A test is marked when it uses one of the fixtures below, or by hand with
``@pytest.mark.external_tool``.
"""

from __future__ import annotations

import pytest

__all__ = ["EXTERNAL_TOOL_FIXTURES", "pytest_collection_modifyitems"]

#: The fixtures (tests/tools.py) that start an external program for a test session.
EXTERNAL_TOOL_FIXTURES = frozenset(
    {"jaeger_server", "otel_collector", "phoenix_server", "rotel_collector"}
)


@pytest.hookimpl(tryfirst=True)  # before ``-m`` selects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the tests that use an external program's fixture."""
    for item in items:
        if EXTERNAL_TOOL_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.external_tool)
