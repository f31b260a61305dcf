"""The wheel carries what Baton needs at run time: built with `uv build`, installed into a fresh
virtual environment (the locked dependencies, no source tree), `baton config check` finds the
default configuration inside the package and `baton init` writes a starter baton.yaml from it."""

from __future__ import annotations

import os
import subprocess
import zipfile
from pathlib import Path

import pytest
import yaml

from baton.settings import SOURCE_CONFIG
from baton.tools import PROJECT_ROOT
from tests.fixtures import unavailable

# As the Makefile calls it (`$(PYTHON) -m uv`).
UV = [os.environ.get("PYTHON", "python3"), "-m", "uv"]


def _uv(*args: str, cwd: Path = PROJECT_ROOT) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [*UV, *args], cwd=cwd, capture_output=True, text=True, check=False, timeout=600
    )
    if result.returncode != 0 and "No module named uv" in result.stderr:
        unavailable("uv is not installed: run `make install`")
    assert result.returncode == 0, result.stderr
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bin directory of a fresh venv with the wheel and the locked runtime dependencies."""
    work = tmp_path_factory.mktemp("wheel")
    _uv("build", "--wheel", "--out-dir", str(work / "dist"))
    (wheel,) = (work / "dist").glob("baton-*.whl")
    requirements = work / "requirements.txt"
    _uv(
        "export",
        "--frozen",
        "--no-dev",
        "--no-hashes",
        "--no-emit-project",
        "-o",
        str(requirements),
    )
    venv = work / "venv"
    _uv("venv", "--python", "3.12", str(venv))
    python = venv / "bin" / "python"
    _uv("pip", "install", "--python", str(python), "-r", str(requirements), str(wheel))
    with zipfile.ZipFile(wheel) as archive:
        assert archive.read("baton/defaults/baton.yaml").decode() == SOURCE_CONFIG.read_text()
    return venv / "bin"


def _baton(bin_dir: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The installed `baton` in `cwd`, with nothing of the source tree on its paths."""
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(cwd), "LANG": "C.UTF-8"}
    argv = [str(bin_dir / "baton"), *args]
    where = {"cwd": cwd, "env": env, "timeout": 120}
    return subprocess.run(argv, check=False, capture_output=True, text=True, **where)


def test_installed_wheel_checks_its_default_configuration(installed: Path, tmp_path: Path) -> None:
    result = _baton(installed, tmp_path, "config", "check", "--json")
    assert result.returncode == 0, result.stderr
    checked = yaml.safe_load(result.stdout)
    assert checked["valid"] is True
    assert Path(checked["file"]).parts[-3:] == ("baton", "defaults", "baton.yaml")
    assert "site-packages" in checked["file"]
    assert checked["environments"] == ["dev", "staging", "prod"]


def test_baton_init_writes_a_starter_configuration(installed: Path, tmp_path: Path) -> None:
    written = _baton(installed, tmp_path, "init")
    assert written.returncode == 0, written.stderr
    assert "wrote baton.yaml" in written.stdout
    assert (tmp_path / "baton.yaml").read_text() == SOURCE_CONFIG.read_text()

    checked = _baton(installed, tmp_path, "config", "check", "baton.yaml")
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.startswith("baton.yaml: ok (2 app(s), 3 environment(s))")

    again = _baton(installed, tmp_path, "init")
    assert again.returncode == 2
    assert again.stderr.strip().splitlines() == [
        "error: baton.yaml exists: edit it, or run `baton init baton.yaml --force` to replace it"
    ]
    assert _baton(installed, tmp_path, "init", "--force").returncode == 0
