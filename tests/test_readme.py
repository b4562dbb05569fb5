"""Every code block of README.md runs as it stands, in a fresh install of the built wheel.

The line before each fenced block says how it is checked, as an HTML comment that
renders as nothing: ``<!-- check: KIND NAME -->``. A block without one fails the test.

- ``install``: ``pip install ...`` lines. Each makes a fresh virtual environment and
  installs what the line names, with ``otel-reqid-logging`` pointing at the wheel built
  from this tree (its extras unchanged), pinned by ``dev-constraints.txt``. The blocks
  after it run in that environment.
- ``serve NAME``: a complete program, saved as NAME and started with ``python NAME``.
- ``program NAME``: a complete program, saved as NAME, started by a ``command NAME`` block.
- ``command NAME``: shell lines run by bash, in the folder of the saved programs.
- ``script NAME``: a complete program, saved as NAME and run to its end; it must exit 0.
- ``output NAME``: lines the server NAME prints, in this order. Dates, times, ids, the
  port, the response size and the user agent stand for any value of their kind.
- ``dev``: ``python3 dev.py ...`` lines. Each must name a dev.py command; running them
  here would run this test suite inside itself, so CI runs ``test`` (see test_package).

A server (``serve`` or ``command``) gets PORT, one ``GET /``, then SIGINT. Its answer must
carry an ``X-Request-ID`` header, and every line of the output that carries an id must
carry that one.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.subprocess_app import ROOT, free_port
from tests.wheels import CONSTRAINTS, clean_env, make_venv, run, uv

README = (ROOT / "README.md").read_text()
MARKED_BLOCK = re.compile(
    r"^<!-- check: (?P<kind>[a-z]+)(?: (?P<name>\S+))? -->\n```(?P<lang>\w*)\n(?P<body>.*?)^```$",
    flags=re.MULTILINE | re.DOTALL,
)
KINDS = {"install", "serve", "program", "command", "script", "output", "dev"}
# What varies from run to run, in the forms the README's output shows it.
VARIABLE = [
    r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}",  # logging's asctime
    r"\[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\]",  # the access log's time
    r"(?<=req:)[0-9a-z]{8}",
    r"(?<=trace:)[0-9a-f]{32}",
    r"(?<=0\.0\.0\.0:)\d+",  # the port in aiohttp's banner
    r"(?<=\" \d{3} )\d+",  # the response size after the status
    r"\"[^\"]*\"$",  # the user agent, last on an access line
]
_VARIABLE = re.compile("|".join(f"({pattern})" for pattern in VARIABLE))


@dataclass(frozen=True)
class Block:
    """One fenced block of the README and its check marker."""

    kind: str
    name: str
    body: str
    line: int


def _blocks() -> list[Block]:
    return [
        Block(
            kind=match["kind"],
            name=match["name"] or "",
            body=match["body"],
            line=README[: match.start()].count("\n") + 2,
        )
        for match in MARKED_BLOCK.finditer(README)
    ]


BLOCKS = _blocks()
RUNNABLE = [block for block in BLOCKS if block.kind in {"serve", "command", "script"}]


def test_every_block_is_marked_and_the_readme_is_short() -> None:
    """No code block escapes these checks, and the README stays a door, not a manual."""
    fences = re.findall(r"^```\w*$", README, flags=re.MULTILINE)
    assert len(fences) == 2 * len(BLOCKS), "a code block without a <!-- check: ... --> marker"
    assert {block.kind for block in BLOCKS} <= KINDS
    assert README.count("\n") < 250


def test_first_screen_is_install_app_and_its_lines() -> None:
    """The README opens with the install line, a complete app, and what it prints."""
    first = BLOCKS[:3]
    assert [(block.kind, block.name) for block in first] == [
        ("install", ""),
        ("serve", "app.py"),
        ("output", "app.py"),
    ]
    assert first[0].body == "pip install otel-reqid-logging\n"
    assert first[2].line < 60
    assert 12 <= first[1].body.count("\n") <= 20


def test_dev_commands_exist() -> None:
    """Each development command the README gives is one dev.py accepts."""
    (dev,) = [block for block in BLOCKS if block.kind == "dev"]
    commands = [line.split("#")[0].split() for line in dev.body.splitlines()]
    assert all(command[:2] == ["python3", "dev.py"] for command in commands)
    source = (ROOT / "dev.py").read_text()
    for command in commands:
        assert f"python3 dev.py {command[2]} " in source, command


def _expected_line(line: str) -> re.Pattern[str]:
    """A pattern for one line of README output: its variable parts match any value."""
    pattern, last = [], 0
    for match in _VARIABLE.finditer(line):
        pattern.append(re.escape(line[last : match.start()]))
        pattern.append(VARIABLE[match.lastindex - 1] if match.lastindex else "")
        last = match.end()
    pattern.append(re.escape(line[last:]))
    return re.compile("".join(pattern))


def _wait_for_port(port: int, process: subprocess.Popen[str], deadline: float) -> None:
    while time.monotonic() < deadline:
        if process.poll() is not None:
            out = process.stdout.read() if process.stdout else ""
            raise AssertionError(f"exited early with {process.returncode}:\n{out}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listened on port {port} in time")


def _serve(command: list[str], folder: Path, venv_bin: Path) -> tuple[str, list[str]]:
    """Start a server, GET / once, stop it; return the request id header and its output."""
    port = free_port()
    env = clean_env()
    env.update(PORT=str(port), PYTHONUNBUFFERED="1", VIRTUAL_ENV=str(venv_bin.parent))
    env["PATH"] = f"{venv_bin}{os.pathsep}{env.get('PATH', '')}"
    process = subprocess.Popen(
        command,
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # so that SIGINT reaches bash and the server it started
    )
    try:
        _wait_for_port(port, process, time.monotonic() + 60)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as response:
            assert response.status == 200
            header = response.headers.get("X-Request-ID", "")
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)
        try:
            out, _ = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            out, _ = process.communicate()
    return header, out.splitlines()


def _install(block: Block, wheel: Path, folder: Path) -> Path:
    """Run an install block's lines into a fresh environment; return its bin folder."""
    python = make_venv(folder / "venv")
    for line in block.body.splitlines():
        words = shlex.split(line)
        assert words[:2] == ["pip", "install"], line
        wanted = [
            f"otel-reqid-logging{word.removeprefix('otel-reqid-logging')} @ {wheel.as_uri()}"
            if word.startswith("otel-reqid-logging")
            else word
            for word in words[2:]
        ]
        run(uv(), "pip", "install", "--quiet", "--python", python, "-c", CONSTRAINTS, *wanted)
    return python.parent


@pytest.fixture(scope="session")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    """Each install block's environment (by the block's line), made once when first needed."""

    class _Lazy(dict[int, Path]):
        def __missing__(self, line: int) -> Path:
            (block,) = [b for b in BLOCKS if b.kind == "install" and b.line == line]
            self[line] = _install(block, wheel, tmp_path_factory.mktemp(f"readme{line}"))
            return self[line]

    return _Lazy()


@pytest.mark.parametrize("target", RUNNABLE, ids=lambda block: f"{block.kind}-{block.name}")
def test_readme_block_runs(target: Block, installed: dict[int, Path], tmp_path: Path) -> None:
    """The block runs as it stands, after the install block before it, with the output shown."""
    venv_bin: Path | None = None
    for block in BLOCKS[: BLOCKS.index(target)]:
        if block.kind == "install":
            venv_bin = installed[block.line]
        elif block.kind in {"serve", "program", "script"}:
            (tmp_path / block.name).write_text(block.body)
    assert venv_bin is not None, "no install block before this one"
    if target.kind == "script":
        (tmp_path / target.name).write_text(target.body)
        run(venv_bin / "python", target.name, cwd=tmp_path)
        return
    if target.kind == "serve":
        (tmp_path / target.name).write_text(target.body)
        command = [str(venv_bin / "python"), target.name]
    else:
        command = ["bash", "-c", target.body]
    header, output = _serve(command, tmp_path, venv_bin)

    assert re.fullmatch(r"[0-9a-z]{8}", header), (header, output)
    ids = set(re.findall(r"\[req:(\S+?)[] ]", "\n".join(output)))
    assert ids == {header}, output
    shown = [b for b in BLOCKS if b.kind == "output" and b.name == target.name]
    expected = shown[0].body.splitlines() if shown else []
    remaining = iter(output)
    for line in expected:
        pattern = _expected_line(line)
        assert any(pattern.fullmatch(actual) for actual in remaining), (line, output)


DOCS = sorted((ROOT / "docs").glob("*.md"))


@pytest.mark.parametrize("page", DOCS, ids=lambda page: page.name)
def test_docs_python_blocks_are_valid_python(page: Path) -> None:
    """Each python block in docs/ at least compiles (the README's blocks run, above)."""
    for number, block in enumerate(
        re.findall(r"^```python\n(.*?)^```$", page.read_text(), re.M | re.S)
    ):
        compile(block, f"{page.name}, python block {number + 1}", "exec")


def _anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as dashes."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@pytest.mark.parametrize("page", [ROOT / "README.md", *DOCS], ids=lambda page: page.name)
def test_relative_links_resolve(page: Path) -> None:
    """Every link to a file of the repository, and to a heading in it, leads somewhere."""
    for target in re.findall(r"\]\(([^)]+)\)", page.read_text()):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        assert linked.exists(), f"{page.name}: {target}"
        if anchor:
            headings = re.findall(r"^#+ (.+)$", linked.read_text(), flags=re.MULTILINE)
            assert anchor in {_anchor(h) for h in headings}, f"{page.name}: {target}"


def test_each_private_name_listed_names_tests_that_exist() -> None:
    """docs/reference.md's list of private names names, for each, tests that exist."""
    root = Path(__file__).resolve().parent.parent
    text = (root / "docs" / "reference.md").read_text(encoding="utf-8")
    section = text.split("## Private names this library uses", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"`(test_\w+)`", section))
    defined = {
        match
        for path in (root / "tests").glob("test_*.py")
        for match in re.findall(r"^(?:async )?def (test_\w+)", path.read_text("utf-8"), re.M)
    }
    assert len(named) >= 10
    assert named <= defined, sorted(named - defined)
