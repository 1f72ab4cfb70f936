"""Headless chromium for the report and dashboard tests (Debian's chromium + chromedriver).

Use the ``browser`` fixture (import it into a test module: ``from tests.browser import browser``
or ``from browser import browser``); it skips with the reason when chromium, chromedriver or
selenium is missing. ``Page`` wraps the driver with the few checks the tests need: console
errors, elements inside Panel/Bokeh shadow roots, and a screenshot's pixel variance.
"""

from __future__ import annotations

import io
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

__all__ = ["CHROMIUM", "CHROMEDRIVER", "CHROMIUM_FLAGS", "browser_missing", "Page", "browser"]

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,1600",
)

# Count elements matching a CSS selector in the document and every (nested) shadow root:
# Panel and Bokeh 3 render their components inside shadow DOM.
_DEEP_COUNT = """
const sel = arguments[0];
function walk(root) {
  let n = root.querySelectorAll(sel).length;
  for (const el of root.querySelectorAll('*')) { if (el.shadowRoot) n += walk(el.shadowRoot); }
  return n;
}
return walk(document);
"""
# All text outside <style>/<script>, shadow roots included.
_DEEP_TEXT = """
const skip = new Set(['STYLE', 'SCRIPT', 'NOSCRIPT']);
function walk(root) {
  let out = [];
  for (const el of root.querySelectorAll('*')) {
    if (el.shadowRoot) out.push(walk(el.shadowRoot));
    if (skip.has(el.tagName)) continue;
    for (const c of el.childNodes) if (c.nodeType === 3 && c.textContent.trim()) out.push(c.textContent);
  }
  return out.join(' ');
}
return walk(document);
"""


def browser_missing() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    for path, what in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromedriver")):
        if not Path(path).exists() and not shutil.which(what):
            return f"{what} not found at {path} (Debian: apt-get install chromium chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install selenium)"
    return None


class Page:
    """A headless chromium page with the checks the monitoring tests need."""

    def __init__(self, driver: Any) -> None:
        self.driver = driver

    def open(self, url: str) -> Page:
        """Load ``url`` (a file:// or http:// address) and wait for the document to be ready."""
        self.driver.get(url)
        self.wait_for(
            lambda: self.driver.execute_script("return document.readyState") == "complete",
            timeout=30,
            what="document ready",
        )
        return self

    def wait_for(
        self, cond: Any, *, timeout: float = 30.0, what: str = "condition", interval: float = 0.5
    ) -> Any:
        """Poll ``cond()`` until it is truthy; fail with ``what`` after ``timeout`` seconds."""
        end = time.monotonic() + timeout
        while True:
            value = cond()
            if value:
                return value
            if time.monotonic() > end:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}")
            time.sleep(interval)

    def count(self, selector: str) -> int:
        """Elements matching ``selector``, inside shadow roots too."""
        return int(self.driver.execute_script(_DEEP_COUNT, selector))

    def text(self) -> str:
        """The page's text, inside shadow roots too."""
        return str(self.driver.execute_script(_DEEP_TEXT))

    def console_errors(self, level: str = "SEVERE") -> list[str]:
        """Console messages at ``level`` since the last call (the log is drained)."""
        return [e["message"] for e in self.driver.get_log("browser") if e.get("level") == level]

    def screenshot(self, path: Path | None = None) -> bytes:
        """A PNG of the viewport (also written to ``path`` when given)."""
        png = self.driver.get_screenshot_as_png()
        if path is not None:
            Path(path).write_bytes(png)
        return png

    @staticmethod
    def pixel_std(png: bytes) -> float:
        """Standard deviation of the grey levels of a PNG (about 0 for a blank page)."""
        import numpy as np
        from PIL import Image

        img = Image.open(io.BytesIO(png)).convert("L")
        return float(np.asarray(img, dtype=float).std())


@pytest.fixture
def browser() -> Iterator[Page]:
    """A fresh headless chromium (own profile directory) for one test."""
    reason = browser_missing()
    if reason:
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="sweep-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium") or ""
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(CHROMEDRIVER if Path(CHROMEDRIVER).exists() else shutil.which("chromedriver"))
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(60)
    try:
        yield Page(driver)
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
