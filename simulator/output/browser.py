"""Headless Chromium for looking at reports (the browser tests and ``benchmarks/screenshots.py``).

Uses the system's Chromium and its ChromeDriver (Debian: ``apt-get install chromium
chromium-driver``) through Selenium, given the driver's path explicitly so that Selenium
Manager never downloads a browser or a driver.  ``RECWORLD_CHROMIUM`` and
``RECWORLD_CHROMEDRIVER`` point at other binaries.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

CHROMIUM_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
DRIVER_CANDIDATES = ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver")


def find_chromium() -> str | None:
    env = os.environ.get("RECWORLD_CHROMIUM")
    if env:
        return env if Path(env).exists() else None
    for name in CHROMIUM_CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


def find_chromedriver() -> str | None:
    env = os.environ.get("RECWORLD_CHROMEDRIVER")
    if env:
        return env if Path(env).exists() else None
    for path in DRIVER_CANDIDATES:
        if Path(path).exists():
            return path
    return shutil.which("chromedriver")


def missing() -> str | None:
    """Why a headless browser cannot be started here (None if it can)."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "the selenium package is not installed (pip install selenium; it is in the dev extra)"
    if find_chromium() is None:
        return "no Chromium found (apt-get install chromium chromium-driver, or set RECWORLD_CHROMIUM)"
    if find_chromedriver() is None:
        return "no chromedriver found (apt-get install chromium-driver, or set RECWORLD_CHROMEDRIVER)"
    return None


class Browser:
    """A headless Chromium driven by Selenium, with its own throwaway profile folder.
    ``with Browser() as b: b.driver.get(url)``."""

    def __init__(self, width: int = 1400, height: int = 1000):
        why = missing()
        if why:
            raise RuntimeError(f"cannot start a headless browser: {why}")
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        self.profile = tempfile.mkdtemp(prefix="recworld-chromium-")
        opts = webdriver.ChromeOptions()
        opts.binary_location = find_chromium()
        for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--disable-dev-shm-usage", "--disable-extensions", "--hide-scrollbars",
                     f"--window-size={width},{height}", f"--user-data-dir={self.profile}"):
            opts.add_argument(flag)
        opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        try:
            self.driver = webdriver.Chrome(service=Service(executable_path=find_chromedriver()), options=opts)
        except BaseException:
            shutil.rmtree(self.profile, ignore_errors=True)
            raise
        self.driver.set_page_load_timeout(60)

    def console_errors(self) -> list[str]:
        """Severe messages in the page's console since the last call (script errors)."""
        return [e["message"] for e in self.driver.get_log("browser") if e.get("level") == "SEVERE"]

    def close(self) -> None:
        try:
            self.driver.quit()
        finally:
            shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> "Browser":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
