"""dev.py sets up ./.venv on any machine: old Pythons, no ensurepip, no pip, broken venvs.

Each test runs dev.py from a copy in a temporary folder, beside a tiny project of its
own, so that a full install of the real project is not needed to see what dev.py does.
Stand-ins play what this machine cannot be made to lack: Debian's python3 without the
python3-venv package (venv's pip step fails, as it does there), and a machine without
pip (a ``pip`` module on PYTHONPATH that exits with an error).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.subprocess_app import ROOT

TINY_PROJECT = """\
[build-system]
requires = ["setuptools>=69"]
build-backend = "setuptools.build_meta"

[project]
name = "tiny-probe"
version = "0"

[project.optional-dependencies]
dev = []

[tool.setuptools]
py-modules = []
"""
FAILING_MODULE = "raise SystemExit('{name} is not available here (a stand-in)')\n"
# venv runs ensurepip isolated from PYTHONPATH, so its failure is played in-process.
NO_ENSUREPIP = """\
import subprocess, venv
def _no_ensurepip(self, context):
    raise subprocess.CalledProcessError(1, ["python", "-m", "ensurepip"])
venv.EnvBuilder._setup_pip = _no_ensurepip
"""


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A folder holding dev.py, the real constraints and a tiny project."""
    shutil.copy(ROOT / "dev.py", tmp_path)
    shutil.copy(ROOT / "dev-constraints.txt", tmp_path)
    (tmp_path / "pyproject.toml").write_text(TINY_PROJECT)
    return tmp_path


def _without(tmp_path: Path, *modules: str) -> str:
    """A PYTHONPATH entry on which importing each of ``modules`` fails, as if absent."""
    folder = tmp_path / "stand-ins"
    for name in modules:
        (folder / name).mkdir(parents=True)
        for file in ("__init__.py", "__main__.py"):
            (folder / name / file).write_text(FAILING_MODULE.format(name=name))
    return str(folder)


def _path_without_uv() -> str:
    """PATH with no uv on it, so dev.py cannot borrow the machine's."""
    keep = [
        entry
        for entry in os.environ.get("PATH", "").split(os.pathsep)
        if entry and not (Path(entry) / "uv").exists()
    ]
    return os.pathsep.join(keep)


def _path_with_uv(tmp_path: Path) -> str:
    """PATH with the development environment's uv on it, as a machine's own uv."""
    folder = tmp_path / "machine-bin"
    folder.mkdir()
    (folder / "uv").symlink_to(Path(sys.executable).parent / "uv")
    return f"{folder}{os.pathsep}{_path_without_uv()}"


def _dev(
    tree: Path, code: str, *, drop: tuple[str, ...] = (), **env: str
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` after ``import dev`` in ``tree``, without the variables named in ``drop``."""
    environ = {
        k: v
        for k, v in os.environ.items()
        if k not in {"VIRTUAL_ENV", "PYTHONPATH"} and not k.startswith(drop)
    }
    environ.update(env)
    return subprocess.run(
        [sys.executable, "-c", f"import dev\n{code}"],
        cwd=tree,
        env=environ,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _uv_runs(tree: Path) -> bool:
    uv = tree / ".venv" / "bin" / "uv"
    return uv.exists() and subprocess.run([uv, "--version"], check=False).returncode == 0


def test_too_old_python_is_refused_first(tree: Path) -> None:
    """An interpreter older than 3.10 is told so, before anything is created."""
    result = _dev(tree, "dev.check_python((3, 9, 18))")
    assert result.returncode == 1
    assert "dev.py needs Python 3.10 or newer" in result.stderr
    assert "is Python 3.9.18" in result.stderr
    assert not (tree / ".venv").exists()


def test_without_ensurepip_uv_comes_from_the_machines_pip(tree: Path, tmp_path: Path) -> None:
    """No ensurepip (Debian without python3-venv): a venv without pip gets uv from pip."""
    result = _dev(tree, NO_ENSUREPIP + "dev.ensure_uv()", PATH=_path_without_uv())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no ensurepip here" in result.stdout
    assert "-m pip --python" in result.stdout  # the machine's pip, aimed at the venv
    assert not (tree / ".venv" / "bin" / "pip").exists()
    assert _uv_runs(tree)


def test_without_ensurepip_uv_comes_from_the_machines_uv(tree: Path, tmp_path: Path) -> None:
    """No ensurepip and no pip, but uv on PATH: that uv installs the pinned one."""
    result = _dev(
        tree,
        NO_ENSUREPIP + "dev.ensure_uv()",
        PYTHONPATH=_without(tmp_path, "pip"),
        PATH=_path_with_uv(tmp_path),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"^\+ \S+/uv pip install --quiet --python ", result.stdout, re.MULTILINE)
    assert _uv_runs(tree)


def test_no_installer_at_all_is_explained(tree: Path, tmp_path: Path) -> None:
    """No ensurepip, no pip, no uv: one clear message, and no half-made .venv left."""
    result = _dev(
        tree,
        NO_ENSUREPIP + "dev.ensure_uv()",
        PYTHONPATH=_without(tmp_path, "pip"),
        PATH=_path_without_uv(),
    )
    assert result.returncode == 1
    assert "dev.py cannot install packages" in result.stderr
    assert "apt-get install python3-venv" in result.stderr
    assert not (tree / ".venv").exists()


def test_half_made_venv_is_made_again(tree: Path) -> None:
    """A .venv a failed first run left behind (no stamp) is rebuilt, then stamped."""
    (tree / ".venv" / "bin").mkdir(parents=True)
    (tree / ".venv" / "leftover").write_text("from a failed run")
    result = _dev(tree, "dev.ensure_venv()")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "was never completed: making it again" in result.stdout
    assert not (tree / ".venv" / "leftover").exists()
    assert (tree / ".venv" / ".dev-installed").exists()

    again = _dev(tree, "dev.ensure_venv()")
    assert again.returncode == 0
    assert again.stdout == ""  # complete and current: nothing to do


def test_venv_with_a_broken_python_is_made_again(tree: Path) -> None:
    """A stamped .venv whose interpreter no longer runs is rebuilt, not reused."""
    assert _dev(tree, "dev.ensure_venv()").returncode == 0
    python = tree / ".venv" / "bin" / "python"
    python.unlink()
    python.symlink_to(tree / "gone" / "python3")
    result = _dev(tree, "dev.ensure_venv()")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is broken (its python does not run): making it again" in result.stdout
    assert subprocess.run([python, "-c", "pass"], check=False).returncode == 0


def test_failed_install_leaves_no_stamp(tree: Path) -> None:
    """An install that fails is not marked done, so the next run does not trust it."""
    (tree / "pyproject.toml").write_text(
        TINY_PROJECT.replace("dev = []", 'dev = ["tiny-probe-dependency-that-is-absent"]')
    )
    result = _dev(tree, "dev.ensure_venv()", UV_OFFLINE="1")
    assert result.returncode != 0
    assert not (tree / ".venv" / ".dev-installed").exists()


def test_package_index_address_is_nowhere_in_dev_py() -> None:
    """dev.py leaves the choice of index to the user's pip and uv settings."""
    text = (ROOT / "dev.py").read_text()
    assert not re.search(r"https?://", text)
    assert "pypi.org" not in text


def test_uv_is_given_the_users_pip_index_settings(tree: Path, tmp_path: Path) -> None:
    """A mirror configured for pip (environment or pip.conf) is the one uv is sent to."""
    config = tmp_path / "pip.conf"
    config.write_text("[global]\nindex-url = http://127.0.0.1:9/mirror/simple\n")
    show = "env = dev.uv_environment()\nprint(env.get('UV_INDEX_URL'), env.get('UV_FIND_LINKS'))"
    mine = ("PIP_", "UV_")  # this machine's own settings stay out of the way
    empty = tmp_path / "empty.conf"
    empty.write_text("")

    from_file = _dev(tree, show, drop=mine, PIP_CONFIG_FILE=str(config))
    assert from_file.stdout.split() == ["http://127.0.0.1:9/mirror/simple", "None"]

    from_env = _dev(
        tree,
        show,
        drop=mine,
        PIP_CONFIG_FILE=str(empty),
        PIP_INDEX_URL="http://127.0.0.1:9/env/simple",
        PIP_FIND_LINKS="/a /b",
    )
    assert from_env.stdout.split() == ["http://127.0.0.1:9/env/simple", "/a,/b"]

    own = _dev(
        tree,
        show,
        drop=mine,
        PIP_CONFIG_FILE=str(config),
        UV_INDEX_URL="http://127.0.0.1:9/uv/simple",
    )
    assert own.stdout.split()[0] == "http://127.0.0.1:9/uv/simple"  # uv's own setting wins


def _tiny_project_declaring(tree: Path, *versions: str) -> None:
    classifiers = ", ".join(f'"Programming Language :: Python :: {v}"' for v in versions)
    (tree / "pyproject.toml").write_text(
        TINY_PROJECT.replace('version = "0"', f'version = "0"\nclassifiers = [{classifiers}]')
    )


def test_declared_versions_are_the_classifiers_from_the_floor_up() -> None:
    """The matrix is the classifiers' versions: every minor from requires-python's floor."""
    import dev  # noqa: PLC0415  (dev.py is a script at the root, importable from there)

    declared = dev.declared_versions()
    assert declared == ["3.10", "3.11", "3.12", "3.13"]
    assert 'requires-python = ">=3.10"' in (ROOT / "pyproject.toml").read_text()
    assert dev.this_version() in declared  # the primary interpreter is a declared one


def test_python_is_found_in_pyenv_when_its_shim_does_not_run(tmp_path: Path) -> None:
    """pyenv's python3.X shim fails without PYENV_VERSION; the build under versions/ is used.

    The shim is a stand-in that fails as pyenv's does; the interpreter is this one.
    """
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    shims = tmp_path / "shims"
    shims.mkdir()
    shim = shims / f"python{version}"
    shim.write_text(f"#!/bin/sh\necho 'pyenv: python{version}: command not found' >&2\nexit 127\n")
    shim.chmod(0o755)
    root = tmp_path / "pyenv"
    for build in (f"{version}.0", f"{version}.99", f"{version}.99t", "2.7.18"):
        (root / "versions" / build / "bin").mkdir(parents=True)
        (root / "versions" / build / "bin" / "python3").symlink_to(sys.executable)
    code = f"print(dev.find_python({version!r}))\nprint(dev.python_candidates({version!r}))"
    result = _dev(ROOT, code, PYENV_ROOT=str(root), PATH=str(shims))
    assert result.returncode == 0, result.stderr
    found, candidates = result.stdout.splitlines()
    # The newest build of that version, not a free-threaded one nor another version.
    assert found == str(root / "versions" / f"{version}.99" / "bin" / "python3")
    assert candidates.index(str(shim)) < candidates.index(found)
    assert "99t" not in candidates
    assert "2.7.18" not in candidates


def test_unknown_python_is_named_with_the_places_tried(tree: Path, tmp_path: Path) -> None:
    """--python with a version nowhere on the machine stops, naming it and where it looked."""
    result = _dev(tree, "dev._resolve('3.99')", PYENV_ROOT=str(tmp_path / "no-pyenv"))
    assert result.returncode == 1
    assert "Python 3.99 not found (tried: " in result.stderr
    assert "/usr/bin/python3.99" in result.stderr
    assert "pyenv install 3.99" in result.stderr
    too_old = _dev(tree, "dev._resolve('3.9')")
    assert too_old.returncode == 1
    assert "3.9" in too_old.stderr


def test_matrix_fails_naming_a_declared_python_it_cannot_find(tree: Path, tmp_path: Path) -> None:
    """A declared version with no interpreter on the machine fails the matrix, by name."""
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    _tiny_project_declaring(tree, version, "3.99")
    result = subprocess.run(
        [sys.executable, "dev.py", "matrix"],
        cwd=tree,
        env={**os.environ, "PYENV_ROOT": str(tmp_path / "no-pyenv")},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "declared Python 3.99 not found on this machine" in result.stdout
    assert "3.99: NOT TESTED, no interpreter found (tried: " in result.stdout
    assert f"{version}:" not in result.stdout  # the primary runs in `dev.py test`, not here
    assert not (tree / ".venv-3.99").exists()


def test_another_pythons_venv_is_made_once_from_the_same_pins(tree: Path) -> None:
    """./.venv-X.Y is made with that interpreter, from dev-constraints.txt, then reused."""
    code = (
        "from pathlib import Path\nimport sys\n"
        "print(dev.ensure_other_venv('9.9', Path(sys.executable)))"
    )
    result = _dev(tree, code)
    assert result.returncode == 0, result.stdout + result.stderr
    python = tree / ".venv-9.9" / "bin" / "python"
    assert result.stdout.splitlines()[-1] == str(python)
    assert f"--constraint {tree / 'dev-constraints.txt'} -e .[dev]" in result.stdout
    assert (tree / ".venv-9.9" / ".dev-installed").exists()
    probe = "import sys; print(sys.prefix)"
    prefix = subprocess.run([python, "-c", probe], capture_output=True, text=True, check=True)
    assert prefix.stdout.strip() == str(tree / ".venv-9.9")
    # With pip, as ./.venv: the tests of dev.py ask the pip of the Python they run on.
    assert subprocess.run([python, "-m", "pip", "--version"], check=False).returncode == 0

    again = _dev(tree, code)
    assert again.returncode == 0
    assert again.stdout.strip() == str(python)  # current: nothing made again


def test_pytest_collecting_nothing_is_a_failure(tree: Path) -> None:
    """pytest's exit 5 (no tests ran) is reported and returned, never taken as a pass."""
    (tree / "empty").mkdir()
    code = "import sys\nfrom pathlib import Path\nprint(dev.pytest(Path(sys.executable), 'empty'))"
    result = _dev(tree, code)
    assert result.stdout.splitlines()[-1] == "5"
    assert "no tests ran (pytest exit 5)" in result.stderr


def test_bench_without_its_tools_says_what_it_needs(tree: Path, tmp_path: Path) -> None:
    """Not root or no apt-get: `bench --check` names wrk and valgrind and how to install them,
    before it builds anything; the tests need neither."""
    empty = tmp_path / "empty-path"
    empty.mkdir()
    result = subprocess.run(
        [sys.executable, "dev.py", "bench", "--check"],
        cwd=tree,
        env={**os.environ, "PATH": str(empty)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1
    assert "the benchmark needs wrk, valgrind, not on PATH" in result.stderr
    assert "sudo apt-get install wrk valgrind" in result.stderr
    assert "python3 dev.py test, need neither" in result.stderr
    assert not (tree / ".venv").exists()


@pytest.mark.parametrize(
    ("args", "needed"),
    [
        ([], ["wrk", "valgrind"]),
        (["--check"], ["wrk", "valgrind"]),
        (["--no-wrk"], ["valgrind"]),
        (["--records-only"], ["valgrind"]),
        (["--no-callgrind", "--rounds=1"], ["wrk"]),
        (["--no-wrk", "--no-callgrind"], []),
    ],
)
def test_bench_asks_only_for_the_tools_its_run_uses(args: list[str], needed: list[str]) -> None:
    """`bench --no-wrk` (instruction counts only) needs no wrk, and so on."""
    import dev  # noqa: PLC0415

    assert dev.bench_tools_needed(args) == needed


def test_suite_holds_no_check_that_needs_the_benchmarks_tools() -> None:
    """The suite (what `dev.py test` runs) collects nothing of tests/bench_checks, which
    `dev.py bench --check` runs: the runs of the benchmark that need wrk and valgrind."""
    listing = {}
    for name, args in {"suite": [], "checks": ["tests/bench_checks"]}.items():
        collected = subprocess.run(
            [sys.executable, "-m", "pytest", "--collect-only", "-q", *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert collected.returncode == 0, collected.stdout + collected.stderr
        listing[name] = [line for line in collected.stdout.splitlines() if "::" in line]
    assert any(line.startswith("tests/test_bench.py::") for line in listing["suite"])
    assert not [line for line in listing["suite"] if "bench_checks" in line]
    checks = {line.split("::")[1].split("[")[0] for line in listing["checks"]}
    assert checks == {
        "test_quick_run_reports_every_configuration",
        "test_callgrind_counts_requests_and_records",
    }


def test_external_tool_marker_follows_the_tools_fixtures(tmp_path: Path) -> None:
    """A test using an external program's fixture is marked, so the matrix can leave it out."""
    (tmp_path / "conftest.py").write_text(
        'import pytest\npytest_plugins = ["tests.markers"]\n\n'
        "@pytest.fixture\ndef jaeger_server():\n    return 'a stand-in: only the name matters'\n"
    )
    (tmp_path / "test_probe.py").write_text(
        "import pytest\n\n"
        "def test_plain():\n    assert True\n\n"
        "def test_with_jaeger(jaeger_server):\n    assert jaeger_server\n\n"
        "@pytest.mark.external_tool\ndef test_marked_by_hand():\n    assert True\n"
    )
    selected = {}
    for selection in ("external_tool", "not external_tool"):
        collected = subprocess.run(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--collect-only", "-q",
             "-m", selection, "-o", "markers=external_tool: probe"],
            cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )  # fmt: skip
        assert collected.returncode == 0, collected.stdout + collected.stderr
        selected[selection] = [
            line.split("::")[1] for line in collected.stdout.splitlines() if "::" in line
        ]
    assert selected["external_tool"] == ["test_with_jaeger", "test_marked_by_hand"]
    assert selected["not external_tool"] == ["test_plain"]


def test_ci_runs_the_suite_then_the_matrix_then_the_benchmarks_checks() -> None:
    """.ci/run: the README's test command, the other Pythons, the benchmark's checks."""
    lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    commands = [line for line in lines if line.startswith("python3 dev.py")]
    assert commands == [
        "python3 dev.py test",
        "python3 dev.py matrix",
        "python3 dev.py bench --check",
    ]
    assert "set -euo pipefail" in lines
