"""What the report tests use besides fixtures (import it from here: never from conftest, whose
module name is the same in every test directory)."""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
PLAYBOOKS = REPO / "playbooks"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def render(chromium: str, html: Path, workdir: Path, screenshot: Path) -> str:
    """Open the page in headless chromium: take a screenshot, return the DOM after rendering (one chromium run: it
    does both)."""
    url = html.resolve().as_uri()
    shown = subprocess.run([chromium, *CHROMIUM_FLAGS, "--user-data-dir=%s" % (workdir / "profile"),
                            "--screenshot=%s" % screenshot, "--window-size=1280,2000", "--dump-dom", url],
                           capture_output=True, text=True, timeout=120, check=False)
    assert shown.returncode == 0 and screenshot.is_file(), shown.stderr[-3000:]
    return shown.stdout
