"""Fixtures shared by the browser tests: Debian's chromium driven by playwright."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

# MLflow's telemetry thread sets and unsets an environment variable while other threads read
# os.environ (a KeyError inside requests, seen with two test processes); nothing phones home.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")

# Headless Chromium as root in a container, with no network beyond localhost
# (../shared/machine-notes.md): no sandbox, no GPU, nothing phoning home.
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync"]
INSTALL_HINT = "`make setup` installs it as root (apt-get install chromium)"


@pytest.fixture(scope="session")
def browser():
    """A headless Chromium; the test is skipped, with the reason, where there is none."""
    path = shutil.which("chromium")
    if path is None:
        pytest.skip(f"Debian's chromium is not installed; {INSTALL_HINT}")
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError:
        pytest.skip("the playwright package is not installed (pip install -e '.[test]')")
    with sync_playwright() as p:
        try:
            chromium = p.chromium.launch(executable_path=path, args=CHROMIUM_FLAGS)
        except Error as err:
            pytest.skip(f"{path} does not start: {str(err).splitlines()[0]}")
        yield chromium
        chromium.close()


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory) -> Path:
    """Where the browser tests put their screenshots: $VAEBENCH_SCREENSHOTS, else a temp folder."""
    folder = Path(os.environ.get("VAEBENCH_SCREENSHOTS") or tmp_path_factory.mktemp("screens"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder
