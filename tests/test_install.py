"""Installable beside another Python and another torch: `make check-compat` builds a second environment from the
package's version ranges (not constraints.txt) with Python 3.12 and the floors of the ranges (torch 2.4.1,
torchvision 0.19.1, numpy 1.26.4, matplotlib 3.8.4), then runs the fast tests in it. It needs PyPI (each run
downloads about 3 GB) and takes the fast test suite's time plus about 2 minutes (about 17 minutes on 2 cores)."""

import glob
import os
import shutil
import subprocess

import pytest
from helpers import PROJECT_ROOT

CANDIDATES = ("python3.12", *sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.12*/bin/python3.12"))))


def python_312() -> str | None:
    """A Python 3.12 that runs (a pyenv shim for a version not selected is found on PATH but fails), or None."""
    for candidate in (os.environ.get("COMPAT_PYTHON"), *CANDIDATES, "/usr/local/bin/python3.12", "/usr/bin/python3.12"):
        path = candidate and shutil.which(candidate)
        if not path:
            continue
        found = subprocess.run([path, "-c", "import sys; print(sys.executable)"], capture_output=True, text=True)
        if found.returncode == 0:
            return found.stdout.strip()
    return None


@pytest.mark.slow
def test_the_package_installs_from_its_ranges_on_python_312_with_the_floor_versions_and_passes_the_fast_tests():
    python = python_312()
    if python is None:
        pytest.skip(
            "no python3.12 found (PATH, ~/.pyenv/versions/3.12*, COMPAT_PYTHON): the check needs a second Python"
        )
    if shutil.which("make") is None:
        pytest.skip("make not found")
    result = subprocess.run(
        ["make", "--no-print-directory", "check-compat", f"COMPAT_PYTHON={python}"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=3 * 3600,
    )
    summary = "\n".join(line for line in result.stdout.splitlines() if line.startswith("check-compat:"))
    print(summary)
    assert result.returncode == 0, (
        f"{summary}\n--- stdout (end)\n{result.stdout[-6000:]}\n--- stderr (end)\n{result.stderr[-4000:]}"
    )
    assert "check-compat: Python 3.12" in summary, summary
