"""aiohttp-request-id-logging 1.0.0's own test suite, run against otel_reqid_logging.compat.

The ancestor's sdist is downloaded with pip at test time into a temporary folder (none
of its code lives in this repository); a conftest there makes its tests import
``otel_reqid_logging.compat`` where they import ``aiohttp_request_id_logging``.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import xml.etree.ElementTree as ET
from pathlib import Path, PurePosixPath

import pytest

ANCESTOR = "aiohttp-request-id-logging==1.0.0"
DOCS = Path(__file__).resolve().parent.parent / "docs" / "migration.md"

# The ancestor's tests of what compat does not carry over, each with the reason;
# docs/migration.md lists them for users. Every other test of its suite must pass.
NOT_CARRIED_OVER = {
    "test_middleware::test_middleware_converts_handler_exception_to_500_response": (
        "the exception goes on to aiohttp, which answers with its own 500 and error line"
    ),
    "test_middleware::test_middleware_get_response_for_exception_can_be_overridden": (
        "no get_response_for_exception hook"
    ),
    "test_middleware::test_middleware_get_request_id_can_adopt_incoming_header": (
        "no get_request_id hook; adopt_incoming_id=True adopts allowlisted ids"
    ),
    "test_middleware::test_middleware_request_id_factory_can_be_injected": (
        "ids come from the span; no request_id_factory"
    ),
    "test_middleware::test_middleware_get_request_id_can_be_injected": "no get_request_id hook",
    (
        "test_middleware::"
        "test_middleware_injected_get_request_id_returning_none_falls_back_to_factory"
    ): "no get_request_id hook, no request_id_factory",
    "test_middleware::test_middleware_add_response_request_id_header_can_be_injected": (
        "no add_response_request_id_header hook; request_id_header_name names the header"
    ),
    "test_middleware::test_add_response_request_id_header_skips_prepared_response": (
        "no add_response_request_id_header method"
    ),
    "test_request_id_factories::test_generate_request_id": (
        "no random id factories (generate_request_id and friends)"
    ),
    "test_sentry::test_middleware_works_without_sentry_sdk": (
        "compat has no module attribute sentry_sdk to patch: it is imported lazily"
    ),
    "test_sentry::test_sentry_scope_is_created_with_request_id_tag": (
        "a fake sentry_sdk patched into the module; the real one tags request_id"
    ),
    "test_sentry::test_sentry_push_scope_is_used_as_fallback": (
        "a faked 1.x; the real sentry-sdk 1.x is tagged through a Hub of the request's own"
    ),
    "test_sentry::test_sentry_sdk_without_scope_functions_warns": (
        "a fake sentry_sdk with no scope functions at all: no such release exists"
    ),
}

_REDIRECT = """\
import sys

import otel_reqid_logging.compat

sys.modules["aiohttp_request_id_logging"] = otel_reqid_logging.compat
"""


@pytest.fixture(scope="module")
def ancestor_outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Download the ancestor's sdist, run its tests against compat, return id -> outcome."""
    folder = tmp_path_factory.mktemp("ancestor")
    download = subprocess.run(
        [
            *(sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"),
            *("--no-binary", ":all:", ANCESTOR, "--dest", str(folder)),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if download.returncode != 0:
        pytest.fail(f"pip could not download {ANCESTOR} (PyPI needed):\n{download.stderr}")
    (sdist,) = folder.glob("*.tar.gz")
    tests = folder / "tests"
    tests.mkdir()
    with tarfile.open(sdist) as archive:
        # Only the test modules, written by name: nothing else of the archive is used.
        for member in archive.getmembers():
            path = PurePosixPath(member.name)
            if member.isfile() and path.parent.name == "tests" and path.suffix == ".py":
                source = archive.extractfile(member)
                assert source is not None
                (tests / path.name).write_bytes(source.read())
    (tests / "conftest.py").write_text(_REDIRECT)
    (folder / "pytest.ini").write_text("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    report = folder / "report.xml"
    subprocess.run(
        [
            *(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"),
            *(f"--junitxml={report}", str(tests)),
        ],
        cwd=folder,
        capture_output=True,
        timeout=300,
        check=False,
    )
    outcomes = {}
    for case in ET.parse(report).getroot().iter("testcase"):  # noqa: S314  (our own report)
        module = case.get("classname", "").rsplit(".", 1)[-1]
        failed = any(child.tag in {"failure", "error"} for child in case)
        skipped = any(child.tag == "skipped" for child in case)
        outcomes[f"{module}::{case.get('name')}"] = (
            "failed" if failed else "skipped" if skipped else "passed"
        )
    return outcomes


def test_every_carried_over_test_of_the_ancestor_passes(ancestor_outcomes: dict[str, str]) -> None:
    """The ancestor's own tests of what compat keeps pass; exactly the listed others fail."""
    assert len(ancestor_outcomes) >= 25, ancestor_outcomes
    assert set(NOT_CARRIED_OVER) <= set(ancestor_outcomes)
    failing = {name for name, outcome in ancestor_outcomes.items() if outcome != "passed"}
    assert failing == set(NOT_CARRIED_OVER)


def test_migration_guide_lists_what_is_not_carried_over() -> None:
    """Users can read which of the ancestor's behaviours compat does not keep."""
    text = DOCS.read_text()
    for name in NOT_CARRIED_OVER:
        assert name.split("::")[1] in text, name
