"""Headless Chromium for driving the demo (its browser test and the documentation screenshot): Debian's ``chromium``
and ``chromium-driver`` through Selenium, both paths given, so Selenium never downloads a driver; every profile is
fresh and the browser's background services are off."""

from __future__ import annotations

import os
import shutil
import socket
from typing import Any

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def chromium_paths() -> tuple[str, str] | None:
    """``(chromium, chromedriver)`` found on ``PATH``, or ``None`` when either is missing."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (chromium, driver) if chromium and driver else None


def headless_chromium(profile_dir: str | os.PathLike, width: int = 1400, height: int = 1500) -> Any:
    """A Selenium ``webdriver.Chrome`` on headless Chromium with a fresh profile in ``profile_dir``."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError as error:
        raise ImportError("Driving Chromium needs selenium, which the 'dev' extra installs.") from error
    paths = chromium_paths()
    if paths is None:
        raise FileNotFoundError("No chromium or chromedriver on PATH: apt-get install chromium chromium-driver.")
    options = webdriver.ChromeOptions()
    options.binary_location = paths[0]
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={os.fspath(profile_dir)}", f"--window-size={width},{height}"):
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=Service(executable_path=paths[1]))
