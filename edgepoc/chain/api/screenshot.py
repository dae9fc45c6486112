"""A screenshot of a node's explorer in headless Chromium (Debian's `chromium`, driven by Playwright).

Used by the demo's report and the explorer test. No browser is ever downloaded: without
/usr/bin/chromium (or the playwright package) `explorer_screenshot` says why and returns False.
"""

from __future__ import annotations

import shutil
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium_path() -> str | None:
    return CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")


def explorer_screenshot(api_url: str, out: Path, timeout_s: float = 30.0) -> str | None:
    """Save the dashboard of the explorer at `api_url` to `out` once its plots are drawn (or it says there are
    none yet).

    Returns None on success, else why there is no screenshot (one line)."""
    exe = chromium_path()
    if exe is None:
        return "no chromium (apt-get install -y chromium)"
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError:
        return "the playwright package is not installed"
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.goto(api_url.rstrip("/") + "/explorer/", timeout=timeout_s * 1000)
                page.wait_for_selector("#blocks-table", timeout=timeout_s * 1000)
                # the plots drawn, or the explorer's own "no block with tasks yet" (a chain with no tasks has
                # no plots: waiting for them took the whole timeout and gave no screenshot)
                page.wait_for_function("document.querySelectorAll('#charts canvas').length >= 5"
                                       " || document.querySelector('#charts .empty') !== null",
                                       timeout=timeout_s * 1000)
                page.screenshot(path=str(out), full_page=True)
            finally:
                browser.close()
    except Error as exc:
        return f"chromium: {str(exc).splitlines()[0][:200]}"
    return None
