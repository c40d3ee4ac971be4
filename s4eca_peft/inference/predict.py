"""``s4eca-predict``: masks and overlays for one image or a batch file, with a trained S4ECA adapter.

One image::

    s4eca-predict --adapter owner/s4eca-swin-b --image tile.png --expression "the ship near the dock" \\
        --output out/tile_mask.png          # also writes out/tile_mask_overlay.png

A batch (CSV with a header, or JSON lines; columns ``image``, ``expression`` and optionally ``output``)::

    s4eca-predict --adapter ./my_adapter --batch queries.csv --output_dir out/

Relative image paths are read from the batch file's folder; relative outputs go under ``--output_dir`` (default
name: ``<image stem>_<hash of image and expression>.png``). The batch is resumable: a row whose mask and overlay
already exist is skipped. A row that fails (missing or unreadable image, empty expression, bad line) is written to
``errors.jsonl`` in the output folder with its reason, and the batch goes on. Rows are predicted ``--batch_size`` at
a time. Every PNG is written to a temporary file and renamed, so an interrupted run never leaves a partial file.

GeoTIFF: a ``.tif``/``.tiff`` mask (when the ``geo`` extra is installed; otherwise the mask is written as before),
or any of ``--vector``, ``--bands``, ``--cog``, predicts the raster window by window and writes a uint8 mask GeoTIFF
with the image's CRS and transform (1 object, 0 background, 255 nodata) and no overlay; ``--vector`` (batch: a
``vector`` column) also writes the polygons as ``.geojson`` or ``.gpkg``. See docs/geospatial.md::

    s4eca-predict --adapter ./my_adapter --image scene.tif --expression "the tanks" --output tanks.tif \\
        --vector tanks.geojson --bands 3 2 1

Exit status: 0 when every row succeeded (or was already done), 1 when some rows failed, 2 when nothing could be done
(bad adapter, batch file or image).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import importlib.util
import json
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .visualization import save_image_atomic

ERRORS_NAME = "errors.jsonl"


@dataclass
class BatchRow:
    """One line of a batch file. ``error`` is set when the line itself is unusable."""

    number: int  # 1-based data row (CSV: without the header; JSONL: line number)
    image: str
    expression: str
    output: str | None = None
    error: str | None = None
    vector: str | None = None


def add_adapter_arguments(parser: argparse.ArgumentParser) -> None:
    """``--adapter``, ``--revision``, ``--device``, ``--dtype``, ``--cache_dir``: which adapter to load, and how."""
    parser.add_argument("--adapter", required=True, help="Adapter folder or Hub repo id.")
    parser.add_argument("--revision", default=None, help="Branch, tag or commit of the Hub repo.")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: CUDA when available).")
    parser.add_argument("--dtype", default="float32", help="float32 (default), bfloat16 or float16.")
    parser.add_argument("--cache_dir", default=None, help="Hugging Face cache folder.")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="s4eca-predict",
        description="Predict referring-segmentation masks (0/255 PNG) and overlays with an S4ECA adapter.",
    )
    add_adapter_arguments(parser)
    single = parser.add_argument_group("one image")
    single.add_argument("--image", help="Image path (PNG, JPEG, TIFF ...).")
    single.add_argument("--expression", help="Referring expression.")
    single.add_argument("--output", help="Mask PNG to write; the overlay goes beside it as <stem>_overlay.png.")
    single.add_argument("--vector", help="Also write the mask's polygons (.geojson or .gpkg) in the image's CRS.")
    batch = parser.add_argument_group("batch")
    batch.add_argument("--batch", help="CSV or JSONL file with columns image, expression[, output].")
    batch.add_argument("--output_dir", help="Folder of the batch outputs and errors.jsonl.")
    batch.add_argument("--overwrite", action="store_true", help="Predict rows whose outputs already exist again.")
    options = parser.add_argument_group("prediction")
    options.add_argument("--threshold", type=float, default=0.5, help="Foreground probability threshold.")
    options.add_argument("--max_side", type=int, default=1600, help="Longer side above which windows are used.")
    options.add_argument("--tile_size", type=int, default=None, help="Window side (default: 2x the training size).")
    options.add_argument("--tile_overlap", type=float, default=0.25, help="Overlap of sliding windows (fraction).")
    options.add_argument("--batch_size", type=int, default=8, help="Images or windows per forward pass.")
    options.add_argument("--no_overlay", action="store_true", help="Write masks only.")
    options.add_argument("--bands", type=int, nargs="+", default=None, help="1-based bands read as red green blue.")
    options.add_argument("--cog", action="store_true", help="Write the mask as a Cloud-Optimized GeoTIFF.")
    return parser


# --------------------------------------------------------------------------- files
def mask_to_image(mask: np.ndarray) -> Image.Image:
    """``(H, W)`` bool -> 8-bit grayscale PNG image, 0 background / 255 foreground."""
    return Image.fromarray(np.where(np.asarray(mask, dtype=bool), 255, 0).astype(np.uint8), mode="L")


GEOTIFF_SUFFIXES = (".tif", ".tiff")


def wants_geotiff(args: argparse.Namespace, output: str | Path | None) -> bool:
    """The georeferenced path: a GeoTIFF-only option, or a .tif/.tiff mask when rasterio is installed."""
    if args.bands or args.cog or getattr(args, "vector", None):
        return True
    return output is not None and Path(output).suffix.lower() in GEOTIFF_SUFFIXES and _has_rasterio()


def _has_rasterio() -> bool:
    return importlib.util.find_spec("rasterio") is not None


def overlay_path(mask_path: Path) -> Path:
    return mask_path.with_name(f"{mask_path.stem}_overlay.png")


def default_output_name(image: str, expression: str) -> str:
    key = hashlib.sha1(f"{image}\0{expression}".encode()).hexdigest()[:10]
    return f"{Path(image).stem}_{key}.png"


def read_batch(path: Path) -> Iterator[BatchRow]:
    """Rows of a ``.csv`` (with a header) or ``.jsonl`` batch file; unusable lines come back with ``error`` set."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            missing = {"image", "expression"} - set(reader.fieldnames or [])
            if missing:
                raise ValueError(
                    f"{path}: the CSV header must name the columns image and expression (and optionally output); "
                    f"missing {', '.join(sorted(missing))}."
                )
            for number, record in enumerate(reader, start=1):
                yield _row(number, record)
    elif suffix in (".jsonl", ".ndjson"):
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as error:
                    yield BatchRow(number, "", "", error=f"line {number} is not valid JSON: {error}")
                    continue
                if not isinstance(record, dict):
                    yield BatchRow(number, "", "", error=f"line {number} is not a JSON object")
                    continue
                yield _row(number, record)
    else:
        raise ValueError(f"{path}: batch files must be .csv or .jsonl, got {suffix or 'no extension'!r}.")


def _row(number: int, record: dict) -> BatchRow:
    image = record.get("image")
    expression = record.get("expression")
    output = record.get("output") or None
    vector = record.get("vector") or None
    row = BatchRow(number, str(image or ""), str(expression or ""), str(output) if output else None)
    row.vector = str(vector) if vector else None
    if not image:
        row.error = "no image given"
    elif not isinstance(expression, str) or not expression.strip():
        row.error = "the expression is empty"
    elif row.output is not None and (Path(row.output).is_absolute() or ".." in Path(row.output).parts):
        row.error = f"output {row.output!r} must be a relative path inside --output_dir"
    elif row.output is not None and Path(row.output).suffix.lower() not in (".png", *GEOTIFF_SUFFIXES):
        row.error = f"output {row.output!r} must be a .png, .tif or .tiff file"
    elif row.vector is not None and (Path(row.vector).is_absolute() or ".." in Path(row.vector).parts):
        row.error = f"vector {row.vector!r} must be a relative path inside --output_dir"
    elif (row.vector or Path(row.output or "").suffix.lower() in GEOTIFF_SUFFIXES) and not _has_rasterio():
        row.error = "GeoTIFF and vector outputs need rasterio; install the geo extra: pip install 's4eca-peft[geo]'"
    return row


def write_outputs(image: object, mask: np.ndarray, mask_path: Path, overlay: bool) -> None:
    from .segmenter import overlay_prediction

    save_image_atomic(mask_to_image(mask), mask_path)
    if overlay:
        save_image_atomic(overlay_prediction(image, mask), overlay_path(mask_path))


# --------------------------------------------------------------------------- modes
def predict_one(segmenter, args: argparse.Namespace) -> int:
    from ..modeling.image_io import load_image

    if wants_geotiff(args, args.output):
        result = segmenter.predict_raster(args.image, args.expression, args.output, vector=args.vector,
                                          bands=args.bands, threshold=args.threshold, cog=args.cog)
        print(f"wrote {result.output}" + (f" and {result.vector}" if result.vector else ""))
        return 0
    mask_path = Path(args.output)
    image = load_image(args.image, name=args.image)  # (H, W, 3) float32, read once for mask and overlay
    mask = segmenter.predict(image, args.expression, threshold=args.threshold)
    write_outputs(image, mask, mask_path, overlay=not args.no_overlay)
    print(f"wrote {mask_path}" + ("" if args.no_overlay else f" and {overlay_path(mask_path)}"))
    return 0


def predict_batch(segmenter, args: argparse.Namespace, rows: list[BatchRow]) -> int:
    from tqdm.auto import tqdm

    from ..modeling.image_io import load_image

    batch_file = Path(args.batch)
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    errors_file = output_dir / ERRORS_NAME
    errors_file.unlink(missing_ok=True)  # this run's failures only; failed rows are retried on the next run
    done = skipped = failed = 0

    def record_error(row: BatchRow, reason: str) -> None:
        nonlocal failed
        failed += 1
        entry = {"row": row.number, "image": row.image, "expression": row.expression, "error": reason}
        with errors_file.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry) + "\n")

    def run_chunk(chunk: list[tuple[BatchRow, Path, np.ndarray]]) -> None:
        nonlocal done
        try:
            masks = segmenter.predict([a for _, _, a in chunk], [r.expression for r, _, _ in chunk], args.threshold)
        except (OSError, ValueError, TypeError):
            if len(chunk) == 1:
                raise
            for item in chunk:  # find the row at fault, predict the others
                try:
                    run_chunk([item])
                except (OSError, ValueError, TypeError) as error:
                    record_error(item[0], str(error))
            return
        for (row, mask_path, image), mask in zip(chunk, masks):
            try:
                write_outputs(image, mask, mask_path, overlay=not args.no_overlay)
                done += 1
            except OSError as error:
                record_error(row, str(error))

    chunk: list[tuple[BatchRow, Path, np.ndarray]] = []
    for row in tqdm(rows, desc="s4eca-predict", unit="row"):
        if row.error is not None:
            record_error(row, row.error)
            continue
        image_path = Path(row.image)
        if not image_path.is_absolute():
            image_path = batch_file.parent / image_path
        mask_path = output_dir / (row.output or default_output_name(row.image, row.expression))
        if row.output is None and (args.bands or args.cog or row.vector):
            mask_path = mask_path.with_suffix(".tif")
        if wants_geotiff(args, mask_path) or row.vector:
            vector_path = output_dir / row.vector if row.vector else None
            if not args.overwrite and mask_path.is_file() and (vector_path is None or vector_path.is_file()):
                skipped += 1
                continue
            try:
                segmenter.predict_raster(image_path, row.expression, mask_path, vector=vector_path, bands=args.bands,
                                         threshold=args.threshold, cog=args.cog)
                done += 1
            except (OSError, ValueError) as error:
                record_error(row, str(error))
            continue
        if not args.overwrite and mask_path.is_file() and (args.no_overlay or overlay_path(mask_path).is_file()):
            skipped += 1
            continue
        try:
            image = load_image(image_path, name=row.image)  # (H, W, 3) float32, read once for mask and overlay
        except (OSError, ValueError, TypeError) as error:
            record_error(row, str(error))
            continue
        chunk.append((row, mask_path, image))
        if len(chunk) == segmenter.batch_size:
            run_chunk(chunk)
            chunk = []
    if chunk:
        run_chunk(chunk)
    print(f"{done} predicted, {skipped} already done, {failed} failed" + (f" (see {errors_file})" if failed else ""))
    return 1 if failed else 0


def predict_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``s4eca-predict``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.batch:
        if args.image or args.expression or args.output or args.vector:
            parser.error("--batch cannot be combined with --image/--expression/--output/--vector (use a vector column).")
        if not args.output_dir:
            parser.error("--batch needs --output_dir.")
    elif not (args.image and args.expression and args.output):
        parser.error("give --image, --expression and --output, or --batch and --output_dir.")
    elif not args.expression.strip():
        parser.error("--expression is empty; describe the object to segment.")

    if (args.vector or args.bands or args.cog) and not _has_rasterio():
        from ..geo.dependencies import GEO_EXTRA_HINT

        parser.error(f"--vector, --bands and --cog need rasterio; {GEO_EXTRA_HINT}.")

    from .segmenter import S4ECASegmenter

    try:
        rows = list(read_batch(Path(args.batch))) if args.batch else []  # a bad batch file fails before loading
        segmenter = S4ECASegmenter.from_pretrained(
            args.adapter,
            revision=args.revision,
            device=args.device,
            dtype=args.dtype,
            cache_dir=args.cache_dir,
            max_side=args.max_side,
            tile_size=args.tile_size,
            tile_overlap=args.tile_overlap,
            batch_size=args.batch_size,
        )
        return predict_batch(segmenter, args, rows) if args.batch else predict_one(segmenter, args)
    except (OSError, ValueError) as error:  # bad adapter, revision, batch file or image: one clear line
        print(f"s4eca-predict: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(predict_main())
