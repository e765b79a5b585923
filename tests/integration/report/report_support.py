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
    """Open the page in headless chromium: take a screenshot, return the DOM after rendering."""
    url = html.resolve().as_uri()
    base = [chromium, *CHROMIUM_FLAGS]
    shot = subprocess.run(base + ["--user-data-dir=%s" % (workdir / "profile-shot"), "--screenshot=%s" % screenshot,
                                  "--window-size=1280,2000", url],
                          capture_output=True, text=True, timeout=120, check=False)
    assert shot.returncode == 0 and screenshot.is_file(), shot.stderr[-3000:]
    dom = subprocess.run(base + ["--user-data-dir=%s" % (workdir / "profile-dom"), "--dump-dom", url],
                         capture_output=True, text=True, timeout=120, check=False)
    assert dom.returncode == 0, dom.stderr[-3000:]
    return dom.stdout
