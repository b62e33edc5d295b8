"""Old module paths (before the layered package of 2026-12) keep importing, as today's modules."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

from spikelight.core.moved import MODULES


@pytest.mark.parametrize("old", sorted(MODULES))
def test_an_old_module_path_imports_as_todays_module_with_a_warning(old):
    new = importlib.import_module(MODULES[old])
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=f"{old} moved to {MODULES[old]}"):
        module = importlib.import_module(old)
    if hasattr(module, "__path__") and not hasattr(new, "__path__"):  # an old package now one module
        assert all(getattr(module, k) is v for k, v in vars(new).items() if not k.startswith("__"))
    else:
        assert module is new


def test_the_readme_imports_of_before_still_run_in_a_fresh_interpreter():
    code = (
        "import warnings; warnings.simplefilter('error', DeprecationWarning)\n"
        "try:\n    from spikelight.surrogate import ATan\nexcept DeprecationWarning as w:\n    print('warned', w)\n"
        "warnings.simplefilter('ignore')\n"
        "from spikelight.surrogate import ATan\nfrom spikelight.core.surrogate import ATan as Now\n"
        "from spikelight.lit import SpikingClassifier\nfrom spikelight.train import SpikingClassifier as C\n"
        "from spikelight.kernels.spec import LIFSpec\nfrom spikelight.models.base import SharedDropout\n"
        "print(ATan is Now, SpikingClassifier is C, LIFSpec.__module__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[0].startswith("warned spikelight.surrogate moved to spikelight.core.surrogate")
    assert out[1] == "True True spikelight.dynamics.spec"
