"""The demo stack's config files: docker-compose.yml and the OpenTelemetry Collector config."""

from __future__ import annotations

import copy
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
COMPOSE_FILE = REPO / "docker-compose.yml"
COLLECTOR_FILE = REPO / "collector" / "otel-collector.yaml"
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
    """The stack pins its images, mounts the collector config and points the demo at it."""
    services = _load(COMPOSE_FILE)["services"]

    assert set(services) == {"otel-collector", "jaeger", "demo"}
    assert services["jaeger"]["image"] == "jaegertracing/jaeger:2.20.0"
    collector_image = services["otel-collector"]["image"]
    assert collector_image.startswith("otel/opentelemetry-collector-contrib:")
    assert collector_image.rpartition(":")[2][0].isdigit(), "collector image is not pinned"
    assert "16686:16686" in services["jaeger"]["ports"]
    mounts = [volume.split(":")[0] for volume in services["otel-collector"]["volumes"]]
    assert "./collector/otel-collector.yaml" in mounts
    for mount in mounts:
        assert (REPO / mount).exists(), f"compose mounts missing file {mount}"
    assert (REPO / services["demo"]["build"]["dockerfile"]).is_file()
    environment = services["demo"]["environment"]
    assert environment["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector:4318"
    assert environment["OTEL_SERVICE_NAME"] == "otel-reqid-demo"


def test_collector_pipelines_name_only_defined_components() -> None:
    """Every traces pipeline uses defined components, memory_limiter first and batch in it."""
    config = _load(COLLECTOR_FILE)

    assert pipeline_problems(config) == []
    assert set(config["service"]["pipelines"]) == {"traces"}
    assert config["exporters"]["otlp/jaeger"]["endpoint"] == "jaeger:4317"
    assert config["exporters"]["otlp/jaeger"]["tls"]["insecure"] is True
    protocols = config["receivers"]["otlp"]["protocols"]
    assert protocols["grpc"]["endpoint"].endswith(":4317")
    assert protocols["http"]["endpoint"].endswith(":4318")


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
