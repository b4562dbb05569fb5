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
