"""Open report pages in a real headless chromium (selenium + chromedriver), for the browser tests
and `python -m sae_exp.browse <run> --time`.

Needs the Debian packages `chromium` and `chromium-driver` (or any chromium and its driver on
PATH) and `pip install selenium`; `missing()` says what is absent. Nothing is downloaded: the
driver path is given, so selenium's own driver manager never runs.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path


def binaries() -> tuple[str | None, str | None]:
    """(chromium, chromedriver) paths on PATH, None where absent."""
    return (shutil.which("chromium") or shutil.which("chromium-browser"),
            shutil.which("chromedriver"))


def missing() -> str | None:
    """Why no headless browser can be started here, or None."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install selenium)"
    if None in binaries():
        return "no chromium/chromedriver on PATH (apt-get install chromium chromium-driver)"
    return None


def open_driver(width: int = 1280, height: int = 1000):
    """A headless chromium WebDriver that keeps the console log (get_log("browser"))."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver = binaries()
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={width},{height}"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(driver), options=opts)


def load(driver, page: Path, timeout: float = 30.0) -> float:
    """Open `page` and wait until its script has rendered it; returns the wall time in seconds
    from the request to the rendered page."""
    start = time.perf_counter()
    driver.get(Path(page).resolve().as_uri())
    while time.perf_counter() - start < timeout:
        if driver.execute_script("return document.body && document.body.dataset.ready"):
            return time.perf_counter() - start
        time.sleep(0.01)
    raise TimeoutError(f"{page} did not render in {timeout:.0f}s: {driver.get_log('browser')}")


def console_errors(driver) -> list[dict]:
    """The SEVERE console entries (errors, uncaught exceptions, failed loads) so far."""
    return [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
