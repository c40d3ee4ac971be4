"""The running demo: driven in headless Chromium with Selenium, and called with `gradio_client`.

Chromium and its driver come from Debian (`apt-get install chromium chromium-driver`, as `.ci/run` does). The app is
served by `s4eca-demo`'s own code on the loopback address; every connection the test process opens is recorded, and
the last test checks that none left the machine (Gradio analytics off).
"""

from __future__ import annotations

import socket
import urllib.request
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
from demo_helpers import build_split_adapter, write_geotiff
from PIL import Image

from s4eca_peft.data.synthetic import generate_scene
from s4eca_peft.demo.browser import chromium_paths, free_port, headless_chromium
from s4eca_peft.demo.launch import build_parser, serve
from s4eca_peft.inference import S4ECASegmenter, overlay_prediction

pytestmark = pytest.mark.slow

EXPRESSION = "the white tank on the left"
LOOPBACK = {"127.0.0.1", "::1", "localhost"}


def record_connections(monkeypatch: pytest.MonkeyPatch, hosts: list[str]) -> None:
    """Record the host of every name lookup and connection this process makes."""
    lookup, connect, connect_ex = socket.getaddrinfo, socket.socket.connect, socket.socket.connect_ex

    def host_of(address) -> str:
        return address[0] if isinstance(address, tuple) else str(address)

    def recorded_lookup(host, *args, **kwargs):
        hosts.append(host if isinstance(host, str) else host.decode())
        return lookup(host, *args, **kwargs)

    def recorded_connect(self, address):
        hosts.append(host_of(address))
        return connect(self, address)

    def recorded_connect_ex(self, address):
        hosts.append(host_of(address))
        return connect_ex(self, address)

    monkeypatch.setattr(socket, "getaddrinfo", recorded_lookup)
    monkeypatch.setattr(socket.socket, "connect", recorded_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", recorded_connect_ex)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """``s4eca-demo --adapter <tiny adapter> --port <free>`` running in this process."""
    pytest.importorskip("gradio", reason="the demo extra installs Gradio")
    root = tmp_path_factory.mktemp("demo_app")
    scene = root / "scene.png"
    generate_scene(1000, 96)[0].save(scene)
    adapter = build_split_adapter(root / "adapter", scene, EXPRESSION)
    hosts: list[str] = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GRADIO_TEMP_DIR", str(root / "gradio"))
        record_connections(patch, hosts)
        port = free_port()
        args = build_parser().parse_args(
            ["--adapter", str(adapter), "--port", str(port), "--device", "cpu", "--workdir", str(root / "work")]
        )
        demo = serve(args, prevent_thread_lock=True)
        try:
            yield {"url": f"http://127.0.0.1:{port}/", "scene": scene, "adapter": adapter, "hosts": hosts}
        finally:
            demo.close()


@pytest.fixture(scope="module")
def expected(served) -> np.ndarray:
    """`S4ECASegmenter.predict`'s mask for the scene, from a separately loaded adapter."""
    mask = S4ECASegmenter.from_pretrained(served["adapter"], device="cpu").predict(served["scene"], EXPRESSION)
    assert 0.2 < mask.mean() < 0.8  # the test adapter splits the scene: a real comparison
    return mask


def fetch_png(url: str) -> np.ndarray:
    assert url.startswith("http://127.0.0.1:"), url
    with urllib.request.urlopen(url, timeout=30) as response:
        data = response.read()
    with Image.open(BytesIO(data)) as image:
        assert image.format == "PNG"
        return np.asarray(image)


@pytest.fixture
def browser(tmp_path):
    pytest.importorskip("selenium", reason="the dev extra installs selenium")
    if chromium_paths() is None:
        pytest.skip("needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)")
    driver = headless_chromium(tmp_path / "chromium-profile")
    try:
        yield driver
    finally:
        driver.quit()


def test_browser_upload_type_submit_shows_the_predicted_mask(served, expected, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as seen
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 180)
    browser.get(served["url"])
    upload = wait.until(seen.presence_of_element_located((By.CSS_SELECTOR, "#s4eca-image input[type=file]")))
    upload.send_keys(str(served["scene"]))
    wait.until(seen.presence_of_element_located((By.CSS_SELECTOR, "#s4eca-image img")))
    browser.find_element(By.CSS_SELECTOR, "#s4eca-expression textarea").send_keys(EXPRESSION)
    browser.find_element(By.CSS_SELECTOR, "#s4eca-submit").click()
    link = wait.until(seen.presence_of_element_located((By.CSS_SELECTOR, "#s4eca-mask-file a[href]")))
    wait.until(seen.text_to_be_present_in_element((By.CSS_SELECTOR, "#s4eca-summary"), "Mask:"))

    def shown(elem_id: str) -> np.ndarray:
        return fetch_png(browser.find_element(By.CSS_SELECTOR, f"#{elem_id} img").get_attribute("src"))

    foreground = np.where(expected, 255, 0)
    np.testing.assert_array_equal(fetch_png(link.get_attribute("href")), foreground)  # the PNG to download
    np.testing.assert_array_equal(shown("s4eca-mask"), foreground)
    np.testing.assert_array_equal(shown("s4eca-overlay"), np.asarray(overlay_prediction(served["scene"], expected)))
    for picture in ("s4eca-scale-weights", "s4eca-spatial-gate"):
        assert shown(picture).ndim == 3
    summary = browser.find_element(By.CSS_SELECTOR, "#s4eca-summary").text
    assert f"{int(expected.sum())} of {expected.size} pixels" in summary
    screenshot = tmp_path / "demo.png"
    assert browser.save_screenshot(str(screenshot))
    with Image.open(screenshot) as image:
        assert image.width >= 1000


def test_gradio_client_calls_the_running_app(served, expected, tmp_path):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    client = Client(served["url"], download_files=str(tmp_path), verbose=False)
    overlay, mask, scale, gate, mask_file, summary, geotiff = client.predict(
        handle_file(str(served["scene"])), EXPRESSION, 0.5, api_name="/segment"
    )
    assert geotiff is None  # a PNG has no grid: the mask PNG only
    with Image.open(mask_file) as png:
        np.testing.assert_array_equal(np.asarray(png), np.where(expected, 255, 0))
    with Image.open(overlay) as picture:
        np.testing.assert_array_equal(np.asarray(picture), np.asarray(overlay_prediction(served["scene"], expected)))
    assert Path(scale).is_file() and Path(gate).is_file() and "Mask:" in summary
    *_, strict_file, _, _ = client.predict(handle_file(str(served["scene"])), EXPRESSION, 0.9, api_name="/segment")
    strict = S4ECASegmenter.from_pretrained(served["adapter"], device="cpu").predict(
        served["scene"], EXPRESSION, threshold=0.9
    )
    with Image.open(strict_file) as png:
        np.testing.assert_array_equal(np.asarray(png), np.where(strict, 255, 0))
    with pytest.raises(AppError, match="Type an expression"):
        client.predict(handle_file(str(served["scene"])), "  ", 0.5, api_name="/segment")
    notes = tmp_path / "notes.txt"
    notes.write_text("not an image")
    with pytest.raises(AppError, match="notes.txt is not an image the app can read: upload a PNG, JPEG"):
        client.predict(handle_file(str(notes)), EXPRESSION, 0.5, api_name="/segment")


def test_gradio_client_gets_a_mask_geotiff_for_a_georeferenced_upload(served, expected, tmp_path):
    from gradio_client import Client, handle_file

    rasterio = pytest.importorskip("rasterio", reason="the geo extra installs rasterio")
    source = write_geotiff(tmp_path / "scene.tif", served["scene"], "EPSG:32633")
    client = Client(served["url"], download_files=str(tmp_path / "downloads"), verbose=False)
    *_, mask_file, _, geotiff = client.predict(handle_file(str(source)), EXPRESSION, 0.5, api_name="/segment")
    with Image.open(mask_file) as png:
        np.testing.assert_array_equal(np.asarray(png), np.where(expected, 255, 0))
    with rasterio.open(source) as given, rasterio.open(geotiff) as written:
        assert (written.crs, written.transform) == (given.crs, given.transform)
        np.testing.assert_array_equal(written.read(1), expected.astype(np.uint8))


def test_the_app_connects_to_nothing_but_the_loopback(served):
    assert served["hosts"], "no connection was recorded: the recorder is not in place"
    assert set(served["hosts"]) <= LOOPBACK, f"connections beyond this machine: {set(served['hosts']) - LOOPBACK}"
