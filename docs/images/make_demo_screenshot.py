"""Draw `docs/images/demo.png`: the `s4eca-demo` app in headless Chromium after segmenting an example scene.

    python docs/images/make_demo_screenshot.py                          # the reference adapter, else trains first
    python docs/images/make_demo_screenshot.py --adapter outputs/small  # an adapter folder you already have

Without ``--adapter`` the reference adapter (``package:s4eca-peft/reference-adapter``) is photographed when one is
installed in the package, at threshold 0.5; otherwise a deliberately small adapter is trained first
(`s4eca-train --image_size 64` on the embedded synthetic scenes, 40 steps of batch 8, seed 0) and photographed at
threshold 0.1 (its probabilities stay low). The app is started on the loopback address, the first example scene is
picked, the threshold is set, **Segment** is pressed and the page is photographed once the result is shown. Needs
the ``dev`` extra and Debian's ``chromium`` + ``chromium-driver``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from PIL import Image

from s4eca_peft.demo.browser import free_port, headless_chromium
from s4eca_peft.demo.launch import build_parser, serve
from s4eca_peft.modeling.packaged import REFERENCE_ADAPTER, reference_adapter_installed

HERE = Path(__file__).resolve().parent
THRESHOLD = 0.5
SMALL_ADAPTER_THRESHOLD = 0.1  # the small adapter's probabilities stay low: a lower threshold shows its mask
TRAIN = ["--image_size", "64", "--max_train_steps", "40", "--per_device_train_batch_size", "8",
         "--num_val_samples", "16", "--num_test_samples", "16", "--logging_steps", "50", "--seed", "0"]


def train(output_dir: Path) -> Path:
    from s4eca_peft.cli import train_main

    train_main(["--output_dir", str(output_dir), *TRAIN])
    return output_dir


def photograph(url: str, profile_dir: Path, path: Path, threshold: float = THRESHOLD) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as seen
    from selenium.webdriver.support.ui import WebDriverWait

    driver = headless_chromium(profile_dir, width=1400, height=1500)
    try:
        wait = WebDriverWait(driver, 300)
        driver.get(url)
        example = (By.CSS_SELECTOR, '#s4eca-examples [data-testid="dataset-cell-0-0"]')
        wait.until(seen.element_to_be_clickable(example)).click()
        wait.until(seen.presence_of_element_located((By.CSS_SELECTOR, "#s4eca-image img")))
        field = driver.find_element(By.CSS_SELECTOR, "#s4eca-threshold input[type=number]")
        field.clear()
        field.send_keys(f"{threshold}", Keys.TAB)
        driver.find_element(By.CSS_SELECTOR, "#s4eca-submit").click()
        summary = (By.CSS_SELECTOR, "#s4eca-summary")
        wait.until(seen.text_to_be_present_in_element(summary, f"threshold {threshold:.2f}"))
        wait.until(seen.presence_of_element_located((By.CSS_SELECTOR, "#s4eca-spatial-gate img")))
        for _ in range(3):  # the page grows while the pictures load: fit the window to it
            time.sleep(2)
            height = int(driver.execute_script(  # Gradio scrolls an inner element: take the tallest content
                "return Math.max(...Array.from(document.querySelectorAll('*'), e => e.scrollHeight))"
            ))
            driver.set_window_size(1400, min(height + 40, 3000))
        tmp = path.with_name(f".tmp-{path.name}")
        driver.save_screenshot(str(tmp))
        with Image.open(tmp) as shot:
            shot.load()
        shot.convert("RGB").save(tmp, format="PNG", optimize=True)
        os.replace(tmp, path)
    finally:
        driver.quit()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--adapter", default=None,
                        help="Adapter folder (default: the reference adapter when installed, else train a small one).")
    parser.add_argument("--threshold", type=float, default=None,
                        help=f"Threshold set in the app (default: {THRESHOLD}; {SMALL_ADAPTER_THRESHOLD} for the small one).")
    parser.add_argument("--output", default=str(HERE / "demo.png"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        adapter, threshold = args.adapter, args.threshold
        if adapter is None and reference_adapter_installed():
            adapter = REFERENCE_ADAPTER
        elif adapter is None:
            adapter = str(train(scratch / "adapter"))
            threshold = SMALL_ADAPTER_THRESHOLD if threshold is None else threshold
        port = free_port()
        demo_args = build_parser().parse_args(
            ["--adapter", adapter, "--port", str(port), "--device", "cpu", "--workdir", str(scratch / "work")]
        )
        demo = serve(demo_args, prevent_thread_lock=True)
        try:
            photograph(f"http://127.0.0.1:{port}/", scratch / "profile", Path(args.output),
                       THRESHOLD if threshold is None else threshold)
        finally:
            demo.close()
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
