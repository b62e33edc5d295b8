"""A wheel install (not editable) has the whole package: every module, the C source of the CPU
kernels and the Hydra config tree (``conf/``, shipped as ``spikelight.conf``), so the config checks
work there as from the repository (issue 18: in a wheel the did-you-mean check silently turned off)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from ..conftest import CONF, ROOT

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    from pip._vendor import tomli as tomllib

SRC = ROOT / "src" / "spikelight"

# run in the installed copy: the editable install's finder (it maps spikelight and spikelight.conf to
# this checkout and would stand in for anything the wheel lacks) is taken off first
PROBE = r"""
import json, sys
sys.meta_path[:] = [f for f in sys.meta_path if not getattr(f, "__module__", "").startswith("__editable__")]
import spikelight
from spikelight.app import checks
from spikelight.core.errors import ConfigError
try:
    checks.preflight(["nueron.tau=2"], "train")
    error = None
except ConfigError as err:
    error = str(err)
print(json.dumps({"package": spikelight.__file__, "conf": str(checks.CONF),
                  "train_yaml": (checks.CONF / "train.yaml").is_file(), "error": error}))
"""


def _packages() -> list[str]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]


def test_packages_list_is_the_package_folders():
    """pyproject.toml lists every package (so conf/ can be mapped in): a folder added under
    src/spikelight must be added there too, or wheels go without it."""
    folders = {p.parent for p in SRC.rglob("*.py") if "__pycache__" not in p.parts}
    no_init = sorted(str(f.relative_to(ROOT)) for f in folders if not (f / "__init__.py").is_file())
    assert not no_init, f"folders of modules without an __init__.py: {no_init}"
    wanted = {".".join(f.relative_to(SRC.parent).parts) for f in folders} | {"spikelight.conf"}
    listed = _packages()
    assert len(listed) == len(set(listed)), "a package is listed twice"
    assert set(listed) == wanted, (f"listed in pyproject.toml, no such package: {sorted(set(listed) - wanted)}; "
                                   f"not listed: {sorted(wanted - set(listed))}")
    assert (CONF / "__init__.py").is_file()


def _copy_tree(dest: Path) -> Path:
    """What the wheel is built from (a copy: setuptools writes build/ and *.egg-info next to the sources,
    and a build/ left from an earlier build can put deleted modules into a wheel)."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "*.so")
    for name in ("src", "conf"):
        shutil.copytree(ROOT / name, dest / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, dest / name)
    return dest


def test_wheel_install_finds_conf_and_checks_arguments(tmp_path):
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input", "--quiet"]
    source = _copy_tree(tmp_path / "source")
    built = subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist"),
                            str(source)], capture_output=True, text=True, timeout=180)
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("spikelight-*.whl")

    # every module, every config file, the C source of the CPU kernels
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {f"spikelight/{p.relative_to(SRC).as_posix()}" for p in SRC.rglob("*")
                if p.suffix in (".py", ".c") and "__pycache__" not in p.parts}
    expected |= {f"spikelight/conf/{p.relative_to(CONF).as_posix()}" for p in CONF.rglob("*")
                 if p.suffix in (".py", ".yaml") and "__pycache__" not in p.parts}
    assert "spikelight/dynamics/native/cpu_native.c" in expected
    assert "spikelight/conf/train.yaml" in expected
    assert not expected - names, f"missing from the wheel: {sorted(expected - names)}"

    site = tmp_path / "site"
    installed = subprocess.run([*pip, "install", "--no-deps", "--no-index", "--target", str(site), str(wheel)],
                               capture_output=True, text=True, timeout=180)
    assert installed.returncode == 0, installed.stderr[-3000:]

    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(PYTHONPATH=str(site), WANDB_MODE="disabled", PYTHONWARNINGS="ignore")
    proc = subprocess.run([sys.executable, "-c", PROBE], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    assert Path(found["package"]).is_relative_to(site), found  # the installed copy ran, not the checkout
    assert Path(found["conf"]).is_relative_to(site) and found["train_yaml"], found
    assert found["error"] == "unknown config key 'nueron' in 'nueron.tau=2'; did you mean 'neuron.tau=2'?", found

