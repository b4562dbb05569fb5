"""The demo stack's config files: docker-compose.yml, the collector's and Jaeger's configs.

Both configs are also run for real (tests.tools starts them for the over-the-wire tests);
here each is checked by the very binary that runs it: the collector's by the OpenTelemetry
Collector built from collector/otelcol/, Jaeger's by Jaeger.
"""

from __future__ import annotations

import copy
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from tests.tools import (
    COLLECTOR_CONFIG,
    JAEGER_CONFIG,
    JAEGER_RELEASE,
    TOOL_VERSIONS,
    JaegerServer,
    jaeger_binary,
    otelcol_binary,
    running_collector,
)

if TYPE_CHECKING:
    from tests.otlp_logs_sink import OtlpLogsSink

REPO = Path(__file__).resolve().parent.parent
COMPOSE_FILE = REPO / "docker-compose.yml"
COLLECTOR_FILE = COLLECTOR_CONFIG
#: `${env:NAME:-default}`, the collector's environment substitution with a default.
ENV_WITH_DEFAULT = re.compile(r"\$\{env:[A-Z_]+:-(?P<default>[^}]+)\}")
CHECK_JSONSCHEMA = Path(sys.executable).parent / "check-jsonschema"


def _check_compose(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _load(path: Path) -> dict[str, Any]:
    loaded = yaml.safe_load(path.read_text())
    assert isinstance(loaded, dict), f"{path} is not a YAML mapping"
    return loaded


def pipeline_problems(config: dict[str, Any]) -> list[str]:
    """What is wrong with the pipelines of a collector config; empty when nothing is."""
    problems = []
    pipelines = config.get("service", {}).get("pipelines", {})
    if not pipelines:
        problems.append("no pipelines under service.pipelines")
    for name, pipeline in pipelines.items():
        for kind in ("receivers", "processors", "exporters"):
            defined = set(config.get(kind) or {})
            for component in pipeline.get(kind, []):
                if component not in defined:
                    problems.append(f"pipeline {name} names {kind[:-1]} {component!r}, not defined")
        for kind in ("receivers", "exporters"):
            if not pipeline.get(kind):
                problems.append(f"pipeline {name} has no {kind}")
        processors = pipeline.get("processors", [])
        if not processors or processors[0] != "memory_limiter":
            problems.append(f"pipeline {name} does not start with memory_limiter: {processors}")
        if "batch" not in processors:
            problems.append(f"pipeline {name} has no batch processor: {processors}")
    return problems


def test_compose_file_matches_the_compose_spec() -> None:
    """docker-compose.yml validates against the compose-spec JSON schema."""
    result = _check_compose(COMPOSE_FILE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_check_rejects_a_broken_copy(tmp_path: Path) -> None:
    """The schema check fails on a copy with a misspelt service key, so its pass means something."""
    broken = _load(COMPOSE_FILE)
    demo = broken["services"]["demo"]
    demo["enviroment"] = demo.pop("environment")
    path = tmp_path / "docker-compose.yml"
    path.write_text(yaml.safe_dump(broken))

    result = _check_compose(path)

    assert result.returncode != 0
    assert "enviroment" in result.stdout + result.stderr


def test_compose_services_are_the_demo_stack() -> None:
    """The stack runs the Collector and Jaeger releases the tests build, mounts the two
    configs the tests run, keeps Jaeger's Badger files on a named volume, pins its images
    and points the demo at the collector."""
    compose = _load(COMPOSE_FILE)
    services = compose["services"]

    assert set(services) == {"otel-collector", "jaeger", "loki", "demo"}
    assert services["jaeger"]["image"] == f"jaegertracing/jaeger:{JAEGER_RELEASE}"
    collector_release = TOOL_VERSIONS["otelcol"].removeprefix("v")
    assert services["otel-collector"]["image"] == (
        f"otel/opentelemetry-collector-contrib:{collector_release}"
    )
    assert services["loki"]["image"].rpartition(":")[2][0].isdigit(), "Loki is not pinned"
    assert "16686:16686" in services["jaeger"]["ports"]
    for name, config in [("otel-collector", COLLECTOR_CONFIG), ("jaeger", JAEGER_CONFIG)]:
        mount = services[name]["volumes"][0]
        source, target, _ = mount.split(":")
        assert REPO / source == config
        assert services[name]["command"] == ["--config", target]
    # Badger's default directory (JAEGER_BADGER_DIR unset) lies on the named volume.
    badger = _load(JAEGER_CONFIG)["extensions"]["jaeger_storage"]["backends"]["badger"]["badger"]
    assert "JAEGER_TRACE_STORAGE" not in services["jaeger"].get("environment", {})
    assert services["jaeger"]["volumes"][1:] == ["jaeger-data:/tmp"]
    assert "jaeger-data" in compose["volumes"]
    assert badger["ephemeral"] is False
    for kind in ("keys", "values"):
        directory = badger["directories"][kind].replace("${env:JAEGER_BADGER_DIR:-/tmp/jaeger}", "")
        assert directory == f"/{kind}", badger["directories"]
    assert (REPO / services["demo"]["build"]["dockerfile"]).is_file()
    environment = services["demo"]["environment"]
    assert environment["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector:4318"
    assert environment["OTEL_SERVICE_NAME"] == "otel-reqid-demo"


def _default(value: str) -> str:
    """The default of a `${env:NAME:-default}` setting; AssertionError for a fixed value."""
    match = ENV_WITH_DEFAULT.fullmatch(value)
    assert match, f"{value!r} is not an environment setting with a default"
    return match["default"]


def test_collector_pipelines_name_only_defined_components() -> None:
    """The traces and logs pipelines use defined components, memory_limiter first and batch
    in each; every address comes from the environment, defaulting to the compose stack."""
    config = _load(COLLECTOR_FILE)
    services = _load(COMPOSE_FILE)["services"]

    assert pipeline_problems(config) == []
    assert set(config["service"]["pipelines"]) == {"traces", "logs"}
    assert "otlp_grpc/jaeger" in config["service"]["pipelines"]["traces"]["exporters"]
    assert "otlp_http/logs" in config["service"]["pipelines"]["logs"]["exporters"]
    assert _default(config["exporters"]["otlp_grpc/jaeger"]["endpoint"]) == "jaeger:4317"
    assert config["exporters"]["otlp_grpc/jaeger"]["tls"]["insecure"] is True
    assert _default(config["exporters"]["otlp_http/logs"]["endpoint"]) == "http://loki:3100/otlp"
    assert {"jaeger", "loki"} <= set(services)
    protocols = config["receivers"]["otlp"]["protocols"]
    assert _default(protocols["grpc"]["endpoint"]) == "0.0.0.0:4317"
    assert _default(protocols["http"]["endpoint"]) == "0.0.0.0:4318"


def test_jaeger_config_listens_where_compose_publishes() -> None:
    """Jaeger's config takes every address from the environment; its query service
    defaults to the port compose publishes, and the collector sends to its OTLP port."""
    config = _load(JAEGER_CONFIG)

    query = config["extensions"]["jaeger_query"]
    assert _default(query["http"]["endpoint"]) == "0.0.0.0:16686"
    assert query["enable_tracing"] is False
    protocols = config["receivers"]["otlp"]["protocols"]
    assert _default(protocols["grpc"]["endpoint"]) == "0.0.0.0:4317"
    assert _default(protocols["http"]["endpoint"]) == "0.0.0.0:4318"
    assert config["service"]["pipelines"]["traces"]["exporters"] == ["jaeger_storage_exporter"]


def test_jaeger_config_stores_on_badger_unless_told_memory() -> None:
    """The exporter writes, and the query service reads, the store JAEGER_TRACE_STORAGE
    names: Badger by default, and the memory store, both defined, when asked for."""
    config = _load(JAEGER_CONFIG)

    backends = config["extensions"]["jaeger_storage"]["backends"]
    assert set(backends["badger"]) == {"badger"}
    assert set(backends["memory"]) == {"memory"}
    written = config["exporters"]["jaeger_storage_exporter"]["trace_storage"]
    read = config["extensions"]["jaeger_query"]["storage"]["traces"]
    assert written == read == "${env:JAEGER_TRACE_STORAGE:-badger}"


def _validate(config: Path) -> subprocess.CompletedProcess[str]:
    binary = otelcol_binary() if config.name.startswith("otel-collector") else jaeger_binary()
    return subprocess.run(
        [str(binary), "validate", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.external_tool
@pytest.mark.parametrize("config", [COLLECTOR_CONFIG, JAEGER_CONFIG], ids=["collector", "jaeger"])
def test_the_binary_that_runs_a_config_accepts_it(config: Path) -> None:
    """The OpenTelemetry Collector validates the collector config, Jaeger its own."""
    result = _validate(config)

    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.external_tool
@pytest.mark.parametrize("exporter", ["otlp_grpc/jaeger", "otlp/jaeger"])
def test_the_collector_runs_the_config_without_deprecation_warnings(
    exporter: str,
    jaeger_server: JaegerServer,
    logs_backend: OtlpLogsSink,
    tmp_path: Path,
) -> None:
    """Started on the repository's config, the Collector warns of nothing deprecated: the
    exporters carry their v0.165.0 names. The same config with the older name `otlp` (a
    deprecated alias there) runs too, and gets the warning, so the check can fail."""
    config = tmp_path / "otel-collector.yaml"
    config.write_text(COLLECTOR_CONFIG.read_text().replace("otlp_grpc/jaeger", exporter))

    with running_collector(
        jaeger=jaeger_server, logs_endpoint=logs_backend.url, workdir=tmp_path, config=config
    ) as collector:
        # Its receivers answer a moment before it logs that it has started everything.
        deadline = time.monotonic() + 10
        while "Everything is ready" not in (log := collector.log_path.read_text()):
            assert time.monotonic() < deadline, log
            time.sleep(0.1)

    if exporter == "otlp_grpc/jaeger":
        assert "deprecated" not in log.lower(), log
    else:
        assert '"otlp" alias is deprecated; use "otlp_grpc" instead' in log, log


@pytest.mark.external_tool
@pytest.mark.parametrize("config", [COLLECTOR_CONFIG, JAEGER_CONFIG], ids=["collector", "jaeger"])
def test_validation_rejects_an_unknown_component(config: Path, tmp_path: Path) -> None:
    """A copy naming a component the distribution lacks fails validation, so a pass means
    something."""
    broken = _load(config)
    broken["exporters"]["tempo_exporter"] = {}
    broken["service"]["pipelines"]["traces"]["exporters"].append("tempo_exporter")
    path = tmp_path / config.name
    path.write_text(yaml.safe_dump(broken))

    result = _validate(path)

    assert result.returncode != 0
    assert "tempo_exporter" in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("kind", "change", "expected"),
    [
        ("exporters", lambda names: [*names, "otlp/tempo"], "'otlp/tempo', not defined"),
        ("processors", lambda names: list(reversed(names)), "does not start with memory_limiter"),
        ("processors", lambda names: ["memory_limiter"], "no batch processor"),
    ],
)
def test_collector_structure_check_catches_mistakes(
    kind: str, change: Callable[[list[str]], list[str]], expected: str
) -> None:
    """The structural check reports each kind of broken pipeline, so its pass means something."""
    config = copy.deepcopy(_load(COLLECTOR_FILE))
    pipeline = config["service"]["pipelines"]["traces"]
    pipeline[kind] = change(pipeline[kind])

    problems = pipeline_problems(config)

    assert any(expected in problem for problem in problems), problems
