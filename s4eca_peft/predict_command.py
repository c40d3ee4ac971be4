"""``s4eca-predict``: masks and overlays for one image (``--image``, ``--expression``, ``--output``) or a batch file
(``--batch``, ``--output_dir``: CSV with a header, or JSON lines) with a trained S4ECA adapter; GeoTIFF and vector
outputs with the ``geo`` extra. Batch rows, ``errors.jsonl``, resuming, the checks made before any prediction and the
exit status (0 done, 1 some rows failed, 2 nothing done) are described in docs/inference.md, docs/geospatial.md and
docs/security.md.
"""

from __future__ import annotations

import argparse
import codecs
import csv
import hashlib
import json
import math
import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image

from .files import append_line, check_target, open_regular, parse_json
from .geo import predict_raster
from .geo.dependencies import GEO_EXTRA_HINT, has_rasterio
from .inference.visualization import save_image_atomic
from .modeling.image_io import MAX_IMAGE_PIXELS
from .modeling.processing import _expression_text

ERRORS_NAME = "errors.jsonl"


@dataclass
class BatchRow:
    """One line of a batch file. ``error`` is set when the line itself is unusable."""

    number: int  # 1-based (CSV: the row's first line, less the header's; JSONL: line number)
    image: str
    expression: str
    output: str | None = None
    error: str | None = None
    vector: str | None = None


def add_adapter_arguments(parser: argparse.ArgumentParser, default_reference: bool = False) -> None:
    """``--adapter``, ``--revision``, ``--device``, ``--dtype``, ``--cache_dir``: which adapter to load, and how.
    With ``default_reference``, ``--adapter`` defaults to the reference adapter when one is installed in the
    package; otherwise it is required."""
    from .modeling.packaged import REFERENCE_ADAPTER, reference_adapter_installed

    default = REFERENCE_ADAPTER if default_reference and reference_adapter_installed() else None
    about = f"Adapter folder, Hub repo id, or {REFERENCE_ADAPTER} (the reference adapter shipped with the package)."
    if default_reference:
        about += " Default: the reference adapter" + (" (installed)." if default else ", but none is installed.")
    parser.add_argument("--adapter", required=default is None, default=default, help=about)
    parser.add_argument("--revision", default=None, help="Branch, tag or commit of the Hub repo.")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: CUDA when available).")
    parser.add_argument("--dtype", default="float32", help="float32 (default), bfloat16 or float16.")
    parser.add_argument("--cache_dir", default=None, help="Hugging Face cache folder.")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="s4eca-predict", description="Predict referring-segmentation masks "
                                     "(0/255 PNG) and overlays with an S4ECA adapter.")
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
    options.add_argument("--threshold", type=fraction(closed=True), default=0.5,
                         help="Foreground probability threshold, in [0, 1].")
    options.add_argument("--max_side", type=positive_int, default=1600, help="Longer side above which windows apply.")
    options.add_argument("--tile_size", type=positive_int, default=None,
                         help="Window side (default: 2x the training size).")
    options.add_argument("--tile_overlap", type=fraction(closed=False), default=0.25,
                         help="Overlap of sliding windows, a fraction in [0, 1).")
    options.add_argument("--batch_size", type=positive_int, default=8, help="Windows per forward pass.")
    options.add_argument("--max_pixels", type=positive_int, default=MAX_IMAGE_PIXELS,
                         help=f"Largest image decoded whole, in pixels (default {MAX_IMAGE_PIXELS}); GeoTIFFs are "
                              "read window by window instead.")
    options.add_argument("--no_overlay", action="store_true", help="Write masks only.")
    options.add_argument("--bands", type=int, nargs="+", default=None, help="1-based bands read as red green blue.")
    options.add_argument("--cog", action="store_true", help="Write the mask as a Cloud-Optimized GeoTIFF.")
    parser.add_argument("--debug", action="store_true", help="Show the full traceback of an error.")
    return parser


def positive_int(text: str) -> int:
    """argparse type: an integer above 0."""
    if not text.strip().isdecimal() or int(text) <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def fraction(closed: bool):
    """argparse type: a number in [0, 1] (``closed``) or [0, 1)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan  # refused below
        if not (0.0 <= value <= 1.0 if closed else 0.0 <= value < 1.0):
            raise argparse.ArgumentTypeError(f"expected a number in [0, 1{']' if closed else ')'}, got {text!r}")
        return value

    return parse


def mask_to_image(mask: np.ndarray) -> Image.Image:
    """``(H, W)`` bool -> 8-bit grayscale PNG image, 0 background / 255 foreground."""
    return Image.fromarray(np.where(np.asarray(mask, dtype=bool), 255, 0).astype(np.uint8), mode="L")


GEOTIFF_SUFFIXES = (".tif", ".tiff")
OUTPUT_SUFFIXES = (".png", *GEOTIFF_SUFFIXES)


def wants_geotiff(args: argparse.Namespace, output: Path) -> bool:
    """The georeferenced path: a GeoTIFF-only option, or a .tif/.tiff mask when rasterio is installed."""
    return bool(args.bands or args.cog or args.vector) or (output.suffix.lower() in GEOTIFF_SUFFIXES
                                                           and has_rasterio())


def overlay_path(mask_path: Path) -> Path:
    return mask_path.with_name(f"{mask_path.stem}_overlay.png")


def default_output_name(image: str, expression: str) -> str:
    key = hashlib.sha1(f"{image}\0{expression}".encode("utf-8", "surrogatepass")).hexdigest()[:10]
    return f"{Path(image).stem}_{key}.png"


MAX_LINE_BYTES = 1 << 20  # a longer batch file line is reported and skipped without being held in memory


def _lines(handle: BinaryIO, bad: dict[int, str]) -> Iterator[str]:
    """Each line of ``handle`` as text (a leading UTF-8 byte-order mark dropped); a line that is not UTF-8 or is too
    long (read past in pieces) comes back replaced, its reason recorded in ``bad`` under its line number."""
    number = 0
    while raw := handle.readline(MAX_LINE_BYTES + 1):
        number += 1
        if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
            while (rest := handle.readline(MAX_LINE_BYTES)) and not rest.endswith(b"\n"):
                pass
            bad[number] = f"line {number} is longer than MAX_LINE_BYTES = {MAX_LINE_BYTES} bytes"
            yield "\n"
            continue
        if number == 1 and raw.startswith(codecs.BOM_UTF8):
            raw = raw[len(codecs.BOM_UTF8):]
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            bad[number] = f"line {number} is not UTF-8 text (byte {raw[error.start:][:1]!r} at {error.start})"
            text = raw.decode("utf-8", "replace")
        yield text.rstrip("\r\n") + "\n"  # CRLF read as LF, inside quoted fields too


def _read_csv(path: Path) -> Iterator[BatchRow]:
    """Rows of a CSV batch file, read by the standard `csv` module (RFC 4180: a quoted field may span lines, up to
    ``csv.field_size_limit()`` characters). A malformed record is reported with the lines it took, and reading goes
    on at the next line."""
    with open_regular(path, "--batch") as handle:
        bad: dict[int, str] = {}
        reader = csv.reader(_lines(handle, bad), strict=True)
        header, first = None, 1
        while True:
            try:
                fields, error = next(reader), None
            except StopIteration:
                break
            except csv.Error as csv_error:
                fields, error = None, f"malformed CSV ({csv_error})"
            last = max(reader.line_num, first)
            where = f"line {first}" if last == first else f"lines {first}-{last}"
            error = next((bad[n] for n in range(first, last + 1) if n in bad), error)
            error = error and f"{path}: {where}: {error}"
            row, first = first - 1, last + 1  # data rows are numbered without the header (the row's first line)
            if error is None and not any(field.strip() for field in fields):
                continue
            if header is None:
                header = _csv_header(path, fields, error)
            elif error is not None or len(fields) > len(header):
                yield BatchRow(row, "", "", error=error or f"{path}: {where} has {len(fields)} fields; the header "
                                                           f"names {len(header)}")
            else:
                yield _row(row, dict(zip(header, fields)))
        if header is None:
            _csv_header(path, [], "the file is empty")


def _csv_header(path: Path, fields: list[str] | None, error: str | None) -> list[str]:
    missing = {"image", "expression"} - set(fields or [])
    if error or missing:
        raise ValueError(f"{path}: the CSV header must name the columns image and expression (and optionally output); "
                         + (f"malformed header ({error})" if error else f"missing {', '.join(sorted(missing))}") + ".")
    return fields


def _read_jsonl(path: Path) -> Iterator[BatchRow]:
    with open_regular(path, "--batch") as handle:
        bad: dict[int, str] = {}
        for number, line in enumerate(_lines(handle, bad), start=1):
            if number in bad:
                yield BatchRow(number, "", "", error=bad[number])
            elif line.strip():
                try:
                    record = parse_json(line, f"line {number}")
                    if not isinstance(record, dict):
                        raise ValueError(f"line {number} is not a JSON object")
                except ValueError as error:
                    yield BatchRow(number, "", "", error=str(error))
                else:
                    yield _row(number, record)


def read_batch(path: Path) -> Iterator[BatchRow]:
    """Rows of a ``.csv`` or ``.jsonl`` batch file, one at a time; unusable lines come back with ``error`` set."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        yield from _read_csv(path)
    elif suffix in (".jsonl", ".ndjson"):
        yield from _read_jsonl(path)
    else:
        raise ValueError(f"{path}: batch files must be .csv or .jsonl, got {suffix or 'no extension'!r}.")


def _row(number: int, record: dict) -> BatchRow:
    image, expression, output, vector = (record.get(key) for key in ("image", "expression", "output", "vector"))
    row = BatchRow(number, str(image or ""), str(expression or ""), str(output) if output else None,
                   vector=str(vector) if vector else None)
    if not image:
        row.error = "no image given"
    elif (text_error := _text_error(expression or "")) is not None:  # empty, not text, not UTF-8
        row.error = text_error
    elif row.output is not None and Path(row.output).suffix.lower() not in OUTPUT_SUFFIXES:
        row.error = f"output {row.output!r} must be a .png, .tif or .tiff file"
    elif (row.vector or Path(row.output or "").suffix.lower() in GEOTIFF_SUFFIXES) and not has_rasterio():
        row.error = f"GeoTIFF and vector outputs need rasterio; {GEO_EXTRA_HINT}"
    return row


def _text_error(expression: str) -> str | None:
    """Why ``expression`` is not usable text (non-UTF-8 bytes, a lone surrogate), or None."""
    try:
        _expression_text(expression, "expression")
    except (TypeError, ValueError) as error:
        return str(error)
    return None


def _real(path: Path) -> Path:
    """``path`` with its folder resolved; the last part is kept (a rename replaces a link there, never follows it)."""
    return Path(os.path.realpath(path.parent)) / path.name


def planned_targets(args: argparse.Namespace, mask_path: Path, vector_path: Path | None) -> dict[str, Path]:
    """The files one prediction writes, by kind: ``output`` and ``overlay``, or on the GeoTIFF path ``vector``."""
    if vector_path is not None or wants_geotiff(args, mask_path):
        return {"output": mask_path} | ({"vector": vector_path} if vector_path is not None else {})
    return {"output": mask_path} | ({} if args.no_overlay else {"overlay": overlay_path(mask_path)})


def plan_batch(rows: list[BatchRow], args: argparse.Namespace) -> list[tuple[Path, Path, Path | None]]:
    """``(image path, mask path, vector path)`` of each row, checked before any work: a row whose outputs leave
    ``--output_dir`` or name something other than a regular file gets ``error`` set; a ValueError names both rows
    when one would write over an input (an image or the batch file) or over another row's output."""
    batch_file, output_dir = Path(args.batch), Path(args.output_dir)
    root = Path(os.path.realpath(output_dir))
    paths = []
    inputs: dict[Path, str] = {Path(os.path.realpath(batch_file)): "the batch file"}
    for row in rows:
        image_path = batch_file.parent / row.image  # an absolute image path stays as it is
        mask_path = output_dir / (row.output or default_output_name(row.image, row.expression))
        if row.output is None and (args.bands or args.cog or row.vector):  # GeoTIFF options: the default is a .tif
            mask_path = mask_path.with_suffix(".tif")
        paths.append((image_path, mask_path, output_dir / row.vector if row.vector else None))
        if row.error is None:
            inputs.setdefault(Path(os.path.realpath(image_path)), f"the input image of row {row.number}")
    written: dict[Path, int] = {}
    conflicts = []
    for row, (_, mask_path, vector_path) in zip(rows, paths):
        for kind, target in planned_targets(args, mask_path, vector_path).items() if row.error is None else ():
            real = _real(target)
            if not real.is_relative_to(root):
                row.error = f"{kind} {str(target)!r} resolves to {str(real)!r}, outside --output_dir {str(root)!r}"
                break
            try:
                check_target(real)
            except OSError as error:
                row.error = str(error)
                break
            if real in inputs:
                conflicts.append(f"row {row.number} would write {str(real)!r}, {inputs[real]}")
            elif real in written:
                conflicts.append(f"rows {written[real]} and {row.number} would both write {str(real)!r}")
            written.setdefault(real, row.number)
    if conflicts:
        more = f" (and {len(conflicts) - 5} more)" if len(conflicts) > 5 else ""
        raise ValueError(f"{batch_file}: refused before any prediction, outputs collide: "
                         + "; ".join(conflicts[:5]) + more + ". Give these rows distinct `output` and `vector` names.")
    return paths


def check_single_output(args: argparse.Namespace) -> dict[str, Path]:
    """The `planned_targets` of one image, checked before any work: a mask that is not .png/.tif/.tiff, and an
    output that is the input image or names something other than a regular file, are refused."""
    if Path(args.output).suffix.lower() not in OUTPUT_SUFFIXES:
        raise ValueError(f"--output {args.output!r}: masks are written as .png, .tif or .tiff files.")
    source = Path(os.path.realpath(args.image))
    targets = planned_targets(args, Path(args.output), Path(args.vector) if args.vector else None)
    for kind, target in targets.items():
        if _real(target) == source or Path(os.path.realpath(target)) == source:
            raise ValueError(f"--{kind} {str(target)!r}: writing it would replace the input image {args.image!r}.")
        check_target(target)
    return targets


def predict_to(segmenter, args: argparse.Namespace, image: Path, name: str, expression: str,
               targets: dict[str, Path]) -> None:
    """Predict one image and write its `planned_targets`; one image in memory."""
    from .inference.segmenter import overlay_prediction
    from .modeling.image_io import load_image

    if "vector" in targets or wants_geotiff(args, targets["output"]):
        predict_raster(segmenter, image, expression, targets["output"], vector=targets.get("vector"),
                       bands=args.bands, threshold=args.threshold, cog=args.cog)
        return
    array = load_image(image, name=name, max_pixels=args.max_pixels)  # (H, W, 3) float32, read once for both
    mask = segmenter.predict(array, expression, threshold=args.threshold)
    save_image_atomic(mask_to_image(mask), targets["output"])
    if "overlay" in targets:
        save_image_atomic(overlay_prediction(array, mask), targets["overlay"])


def predict_batch(segmenter, args: argparse.Namespace, rows: list[BatchRow],
                  paths: list[tuple[Path, Path, Path | None]]) -> int:
    """Predict the planned rows one image at a time, failures appended to ``errors.jsonl``; the exit status."""
    from tqdm.auto import tqdm

    errors_file = Path(args.output_dir) / ERRORS_NAME
    errors_file.parent.mkdir(parents=True, exist_ok=True)
    run_id = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
    done = skipped = failed = 0
    for row, (image_path, mask_path, vector_path) in tqdm(list(zip(rows, paths)), desc="s4eca-predict", unit="row"):
        targets = planned_targets(args, mask_path, vector_path)
        if row.error is None and not args.overwrite and all(path.is_file() for path in targets.values()):
            skipped += 1
            continue
        try:
            if row.error is not None:
                raise ValueError(row.error)
            predict_to(segmenter, args, image_path, row.image, row.expression, targets)
            done += 1
        except (OSError, ValueError, TypeError) as error:
            failed += 1
            entry = {"run": run_id, "row": row.number, "image": row.image, "expression": row.expression,
                     "error": str(error)}
            append_line(errors_file, json.dumps(entry))
    print(f"{done} predicted, {skipped} already done, {failed} failed"
          + (f" (see {errors_file}, run {run_id})" if failed else ""))
    return 1 if failed else 0


def predict_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``s4eca-predict``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.batch:
        if args.image or args.expression or args.output or args.vector:
            parser.error("--batch takes no --image/--expression/--output/--vector (use a vector column).")
        if not args.output_dir:
            parser.error("--batch needs --output_dir.")
    elif not (args.image and args.expression and args.output):
        parser.error("give --image, --expression and --output, or --batch and --output_dir.")
    elif (text_error := _text_error(args.expression)) is not None:
        parser.error(f"--{text_error}")

    if (args.vector or args.bands or args.cog) and not has_rasterio():
        parser.error(f"--vector, --bands and --cog need rasterio; {GEO_EXTRA_HINT}.")

    from .inference.segmenter import S4ECASegmenter, resolve_device

    if threading.current_thread() is threading.main_thread():  # a stop request runs the clean-up of temporaries
        signal.signal(signal.SIGTERM, _stop)
    try:
        device = resolve_device(args.device)
        if args.batch:  # a bad batch file or colliding outputs fail before the adapter is loaded
            rows = list(read_batch(Path(args.batch)))
            paths = plan_batch(rows, args)
        else:
            targets = check_single_output(args)
        windows = {name: getattr(args, name) for name in ("max_side", "tile_size", "tile_overlap", "batch_size")}
        segmenter = S4ECASegmenter.from_pretrained(args.adapter, revision=args.revision, device=device,
                                                   dtype=args.dtype, cache_dir=args.cache_dir, **windows)
        if args.batch:
            return predict_batch(segmenter, args, rows, paths)
        predict_to(segmenter, args, Path(args.image), args.image, args.expression, targets)
        print("wrote " + " and ".join(str(path) for path in targets.values()))
        return 0
    except (OSError, ValueError) as error:  # bad adapter, revision, batch file or image: one clear line
        if args.debug:
            raise
        print(f"s4eca-predict: error: {error}", file=sys.stderr)
        return 2


def _stop(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    sys.exit(predict_main())
