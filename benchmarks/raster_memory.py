"""Peak memory and time of `s4eca_peft.geo.predict_raster` on square GeoTIFF scenes of growing size.

Each scene (3-band uint8, DEFLATE-compressed, 512-px tiles, EPSG:32633, bright 200-px squares every 1000 px on a
textured background) is written once, block by block. Each (predictor, scene) pair then runs in a fresh subprocess:
once the predictor is built, the process's peak RSS is reset (``/proc/self/clear_refs``), `predict_raster` writes
the mask GeoTIFF and the polygons (GeoJSON), and the peak RSS during the prediction and the wall time are read.
Ratios are against the smallest scene of the same predictor, measured in the same run.

Predictors:

* ``fast``: a stand-in probability function (pixel brightness): no model, so the figures isolate what the scene
  size changes (reading, blending, writing, polygons); windows of 960 px overlapping by 25 %, 8 per batch, as the
  segmenter's defaults for a 480-px adapter;
* ``tiny``: a real S4ECA segmenter (random weights) on the tiny Swin + 2-layer BERT of
  ``benchmarks.predict_throughput`` at 480 px, the same windows, each resized to 480 px.
* ``tiny-in-memory``: for reference, today's `S4ECASegmenter.predict` on the scene decoded whole (uniform averaging
  of the same windows); only for scenes that fit in memory.

    python -m benchmarks.raster_memory                                   # fast at 2k/8k/16k, tiny at 2k
    python -m benchmarks.raster_memory --sizes 2048 4096 --tiny-sizes 2048 --docs /tmp/geo.md

The table goes to the ``raster-memory`` section of docs/geospatial.md (``--docs`` writes elsewhere, ``--no-docs``
nowhere).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import (
    REPO,
    format_bytes,
    load_average,
    machine_info,
    machine_line,
    markdown_table,
    module_process,
    write_section,
)
from benchmarks.harness import (
    PREDICT_SIZE,
    build_predictor_model,
    current_rss_bytes,
    peak_rss_bytes,
    reset_peak_rss,
    word_tokenizer,
)

DOCS_PAGE = REPO / "docs" / "geospatial.md"
EXPRESSION = "the bright square buildings"


def write_scene(path: Path, side: int) -> None:
    """A ``side`` x ``side`` 3-band uint8 GeoTIFF, written 512 rows at a time."""
    import numpy as np
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    profile = dict(
        driver="GTiff",
        width=side,
        height=side,
        count=3,
        dtype="uint8",
        crs="EPSG:32633",
        transform=from_origin(500_000.0, 4_000_000.0, 0.5, 0.5),
        tiled=True,
        blockxsize=512,
        blockysize=512,
        compress="deflate",
    )
    with rasterio.open(path, "w", **profile) as sink:
        for top in range(0, side, 512):
            rows = min(512, side - top)
            y, x = np.mgrid[top : top + rows, 0:side]
            texture = (40 + 30 * np.sin(x / 37.0) * np.cos(y / 53.0)).astype(np.uint8)
            square = ((y % 1000) >= 400) & ((y % 1000) < 600) & ((x % 1000) >= 400) & ((x % 1000) < 600)
            band = np.where(square, 220, texture).astype(np.uint8)
            sink.write(np.stack([band, band, band]), window=Window(0, top, side, rows))


def tiny_segmenter():
    import torch
    from peft import get_peft_model

    from s4eca_peft import ReferringSegmentationProcessor, S4ECASegmenter

    base, peft_config = build_predictor_model("tiny")
    torch.manual_seed(0)
    model = get_peft_model(base, peft_config).eval()
    processor = ReferringSegmentationProcessor(word_tokenizer(), image_size=PREDICT_SIZE, max_length=20)
    return S4ECASegmenter(model, processor, batch_size=8)


def child(predictor_name: str, scene: Path, out: Path) -> dict:
    """Runs in its own process: build the predictor, reset the peak RSS, predict, report."""
    import numpy as np
    import torch

    from s4eca_peft.geo import predict_raster

    torch.set_num_threads(1)
    if predictor_name == "fast":
        predictor = lambda windows: [window.mean(axis=2) for window in windows]  # noqa: E731
    else:
        predictor = tiny_segmenter()
        predictor.predict(np.zeros((480, 480, 3), np.uint8), EXPRESSION)  # warm-up
    ready = current_rss_bytes()
    reset = reset_peak_rss()
    start = time.perf_counter()
    if predictor_name == "tiny-in-memory":
        from s4eca_peft.modeling.image_io import load_image

        mask = predictor.predict(load_image(scene), EXPRESSION)
        windows = len(predictor.window_boxes(*mask.shape)) if predictor.needs_windows(*mask.shape) else 1
        polygons = None
    else:
        result = predict_raster(predictor, scene, EXPRESSION, out / "mask.tif", vector=out / "mask.geojson")
        windows, polygons = result.windows, result.polygons
    seconds = time.perf_counter() - start
    return {
        "ready_rss": ready,
        "peak_rss": peak_rss_bytes(),
        "peak_reset": reset,
        "seconds": seconds,
        "windows": windows,
        "polygons": polygons,
    }


def measure(predictor: str, scene: Path, side: int, folder: Path) -> dict:
    out = folder / f"{predictor}_{side}"
    out.mkdir()
    prefix, env = module_process("raster_memory")
    command = [*prefix, "--child", predictor, str(scene), str(out)]
    done = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{predictor} at {side} px failed:\n{done.stderr[-3000:]}")
    record = json.loads(done.stdout.strip().splitlines()[-1])
    record.update(predictor=predictor, side=side)
    print(
        f"{predictor:>15} {side:>6} px: peak {format_bytes(record['peak_rss'])}, {record['seconds']:.1f} s, "
        f"{record['windows']} windows",
        flush=True,
    )
    return record


def table(records: list[dict]) -> str:
    rows = []
    for record in records:
        first = next(r for r in records if r["predictor"] == record["predictor"])
        megapixels = record["side"] ** 2 / 1e6
        rows.append(
            [
                record["predictor"],
                f"{record['side']} x {record['side']}",
                f"{megapixels:.1f}",
                str(record["windows"]),
                format_bytes(record["ready_rss"]),
                format_bytes(record["peak_rss"]),
                f"{record['peak_rss'] / first['peak_rss']:.2f}x",
                f"{record['seconds']:.1f}",
                f"{record['seconds'] / megapixels:.3f}",
            ]
        )
    header = [
        "predictor",
        "scene (px)",
        "MP",
        "windows",
        "RSS before",
        "peak RSS",
        "peak vs smallest",
        "time (s)",
        "s / MP",
    ]
    return markdown_table(header, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[2048, 8192, 16384], help="Scene sides, fast predictor."
    )
    parser.add_argument("--tiny-sizes", type=int, nargs="*", default=[2048], help="Scene sides, tiny S4ECA segmenter.")
    parser.add_argument(
        "--in-memory-sizes",
        type=int,
        nargs="*",
        default=[2048],
        help="Scene sides for today's whole-image predict (reference).",
    )
    parser.add_argument("--docs", default=str(DOCS_PAGE), help="Page whose raster-memory section gets the table.")
    parser.add_argument("--no-docs", action="store_true", help="Print only.")
    parser.add_argument("--json", default=None, help="Also write the raw results here.")
    parser.add_argument("--child", nargs=3, metavar=("PREDICTOR", "SCENE", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], Path(args.child[1]), Path(args.child[2]))))
        return

    runs = [("fast", s) for s in args.sizes] + [("tiny", s) for s in args.tiny_sizes]
    runs += [("tiny-in-memory", s) for s in args.in_memory_sizes]
    records = []
    with tempfile.TemporaryDirectory(prefix="raster_memory_") as tmp:
        folder = Path(tmp)
        scenes = {}
        for side in sorted({side for _, side in runs}):
            scenes[side] = folder / f"scene_{side}.tif"
            start = time.perf_counter()
            write_scene(scenes[side], side)
            print(f"wrote a {side} x {side} scene in {time.perf_counter() - start:.1f} s", flush=True)
        for predictor, side in runs:
            records.append(measure(predictor, scenes[side], side, folder))

    text = table(records)
    print(text)
    info = machine_info(threads=1)
    command = "python -m benchmarks.raster_memory " + " ".join(sys.argv[1:]).replace(str(args.docs), "").strip()
    section = (
        f"{text}\n\nCommand: `{command.strip()}`. Machine: {machine_line(info)}; load average "
        f"{load_average()} at the end. Peak RSS is the process's high-water mark during the prediction (reset "
        'after the predictor was built); it includes the Python, torch and GDAL runtime ("RSS before").'
    )
    if not args.no_docs:
        write_section(args.docs, "raster-memory", section)
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": info, "results": records}, indent=2))


if __name__ == "__main__":
    main()
