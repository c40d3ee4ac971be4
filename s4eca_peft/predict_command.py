"""``s4eca-predict``: masks and overlays for one image or a batch file, with a trained S4ECA adapter.

One image::

    s4eca-predict --adapter owner/s4eca-swin-b --image tile.png --expression "the ship near the dock" \\
        --output out/tile_mask.png          # also writes out/tile_mask_overlay.png

A batch (CSV with a header, or JSON lines; columns ``image``, ``expression`` and optionally ``output``)::

    s4eca-predict --adapter ./my_adapter --batch queries.csv --output_dir out/

Relative image paths are read from the batch file's folder; relative outputs go under ``--output_dir`` (default
name: ``<image stem>_<hash of image and expression>.png``). The batch is resumable: a row whose mask and overlay
already exist is skipped. A row that fails (missing or unreadable image, empty or non-UTF-8 expression, bad line or
CSV quoting) is written to ``errors.jsonl`` in the output folder with its reason, and the batch goes on. A CSV quoted
field may span lines (RFC 4180); a quote left open is reported at the row that opened it, and the lines after it are
read as rows again. A UTF-8 byte-order mark is accepted. Rows are predicted ``--batch_size`` at a time.

Nothing is overwritten by accident: before any prediction, every mask and overlay path is resolved (symbolic links
followed) and must lie inside ``--output_dir``, and a batch in which a row would write over an input image or over
another row's mask or overlay is refused, naming both rows. Every PNG is written to an exclusively created temporary
file in the target folder and renamed, so an interrupted run never leaves a partial file.

GeoTIFF: a ``.tif``/``.tiff`` mask (when the ``geo`` extra is installed; otherwise the mask is written as before),
or any of ``--vector``, ``--bands``, ``--cog``, predicts the raster window by window and writes a uint8 mask GeoTIFF
with the image's CRS and transform (1 object, 0 background, 255 nodata) and no overlay; ``--vector`` (batch: a
``vector`` column) also writes the polygons as ``.geojson`` or ``.gpkg``. See docs/geospatial.md::

    s4eca-predict --adapter ./my_adapter --image scene.tif --expression "the tanks" --output tanks.tif \\
        --vector tanks.geojson --bands 3 2 1

Exit status: 0 when every row succeeded (or was already done), 1 when some rows failed, 2 when nothing could be done
(bad adapter, batch file, image or arguments: one line on stderr; ``--debug`` shows the traceback instead).
"""

from __future__ import annotations

import argparse
import codecs
import csv
import hashlib
import json
import os
import sys
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .geo import predict_raster
from .geo.dependencies import has_rasterio
from .inference.visualization import save_image_atomic
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
    options.add_argument("--threshold", type=fraction(1.0, closed=True), default=0.5,
                         help="Foreground probability threshold, in [0, 1].")
    options.add_argument("--max_side", type=positive_int, default=1600, help="Longer side above which windows are used.")
    options.add_argument("--tile_size", type=positive_int, default=None,
                         help="Window side (default: 2x the training size).")
    options.add_argument("--tile_overlap", type=fraction(1.0, closed=False), default=0.25,
                         help="Overlap of sliding windows, a fraction in [0, 1).")
    options.add_argument("--batch_size", type=positive_int, default=8, help="Images or windows per forward pass.")
    options.add_argument("--no_overlay", action="store_true", help="Write masks only.")
    options.add_argument("--bands", type=int, nargs="+", default=None, help="1-based bands read as red green blue.")
    options.add_argument("--cog", action="store_true", help="Write the mask as a Cloud-Optimized GeoTIFF.")
    parser.add_argument("--debug", action="store_true", help="Show the full traceback of an error.")
    return parser


def positive_int(text: str) -> int:
    """argparse type: an integer above 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def fraction(high: float, closed: bool):
    """argparse type: a float in ``[0, high]`` (``closed``) or ``[0, high)``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not (0.0 <= value <= high if closed else 0.0 <= value < high):
            raise argparse.ArgumentTypeError(f"expected a number in [0, {high:g}{']' if closed else ')'}, got {value}")
        return value

    return parse


# --------------------------------------------------------------------------- files
def mask_to_image(mask: np.ndarray) -> Image.Image:
    """``(H, W)`` bool -> 8-bit grayscale PNG image, 0 background / 255 foreground."""
    return Image.fromarray(np.where(np.asarray(mask, dtype=bool), 255, 0).astype(np.uint8), mode="L")


GEOTIFF_SUFFIXES = (".tif", ".tiff")


def wants_geotiff(args: argparse.Namespace, output: str | Path | None) -> bool:
    """The georeferenced path: a GeoTIFF-only option, or a .tif/.tiff mask when rasterio is installed."""
    if args.bands or args.cog or getattr(args, "vector", None):
        return True
    return output is not None and Path(output).suffix.lower() in GEOTIFF_SUFFIXES and has_rasterio()


def overlay_path(mask_path: Path) -> Path:
    return mask_path.with_name(f"{mask_path.stem}_overlay.png")


def default_output_name(image: str, expression: str) -> str:
    key = hashlib.sha1(f"{image}\0{expression}".encode("utf-8", "surrogatepass")).hexdigest()[:10]
    return f"{Path(image).stem}_{key}.png"


def _lines(path: Path) -> Iterator[tuple[int, str | None, str | None]]:
    """``(line number, text, error)`` for each line of ``path`` read as UTF-8 (a byte-order mark is dropped); a line
    that is not UTF-8 comes back with ``text`` None and the reason, so one bad line never stops the others."""
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if number == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8):]
            try:
                yield number, raw.decode("utf-8").rstrip("\r\n"), None
            except UnicodeDecodeError as error:
                yield number, None, f"line {number} is not UTF-8 text (byte {raw[error.start:error.start + 1]!r} at {error.start})"


MAX_RECORD_LINES = 100
"""A CSV quoted field may span lines (RFC 4180); a quote still open after this many lines is reported unterminated."""

_END_OF_DATA = "unexpected end of data"  # csv's message for a quote still open where the lines end


def _csv_fields(lines: list[str]) -> list[str] | None:
    """The fields of the one CSV record made of ``lines``; None when a quoted field is still open at their end.
    Other malformed quoting (text after a closing quote, lines holding more than one record) raises csv.Error."""
    try:
        records = list(csv.reader([line + "\n" for line in lines], strict=True))
    except csv.Error as error:
        if str(error) == _END_OF_DATA:
            return None
        raise
    if len(records) != 1:
        raise csv.Error(f"{len(records)} records where one was expected")
    return records[0]


def _csv_records(path: Path) -> Iterator[tuple[str, int, list[str] | None, str | None]]:
    """``(where, first line number, fields, error)`` for each CSV record of ``path`` (``where``: ``line 3`` or
    ``lines 3-4``), the header first; blank lines between records are skipped. A quoted field may span lines. A quote
    that is still open at the end of the file, at a line that is not UTF-8 or after ``MAX_RECORD_LINES`` lines is
    reported at the line that opened it, and the lines after that one are read again as records of their own: an
    unterminated quote never swallows later rows."""
    lines = _lines(path)
    ahead: deque[tuple[int, str | None, str | None]] = deque()

    def next_line() -> tuple[int, str | None, str | None] | None:
        return ahead.popleft() if ahead else next(lines, None)

    while (first := next_line()) is not None:
        number, text, error = first
        if error is not None or not text.strip():
            if error is not None:
                yield f"line {number}", number, None, error
            continue
        taken: list[tuple[int, str | None, str | None]] = [first]
        while True:
            where = f"line {number}" if len(taken) == 1 else f"lines {number}-{taken[-1][0]}"
            try:
                fields = _csv_fields([line for _, line, _ in taken])
            except csv.Error as csv_error:
                fields, error = None, f"{path}: {where}: malformed CSV quoting ({csv_error})"
            if fields is not None:
                yield where, number, fields, None
                break
            if error is None:  # a quote is still open: take the next line, unless the lines end or are not text
                following = next_line() if len(taken) < MAX_RECORD_LINES else None
                if following is not None and following[2] is None:
                    taken.append(following)
                    continue
                if following is not None:
                    ahead.appendleft(following)
                    end = f"line {following[0]}, which is not UTF-8"
                else:
                    end = "the end of the file" if len(taken) < MAX_RECORD_LINES else f"{MAX_RECORD_LINES} lines"
                error = f"{path}: line {number}: malformed CSV quoting (a quote opened here is still open at {end})"
            ahead.extendleft(reversed(taken[1:]))  # read again: they may be rows of their own
            yield f"line {number}", number, None, error
            break


def _read_csv(path: Path) -> Iterator[BatchRow]:
    records = _csv_records(path)
    _, _, fieldnames, error = next(records, ("", 1, None, "the file is empty"))
    fieldnames = fieldnames or []
    missing = {"image", "expression"} - set(fieldnames)
    if error or missing:
        raise ValueError(
            f"{path}: the CSV header must name the columns image and expression (and optionally output); "
            + (f"malformed header ({error})" if error else f"missing {', '.join(sorted(missing))}") + "."
        )
    for where, number, values, error in records:
        row = number - 1  # data rows, without the header (the row's first line)
        if error is not None:
            yield BatchRow(row, "", "", error=error)
        elif len(values) > len(fieldnames):
            yield BatchRow(row, "", "", error=f"{path}: {where} has {len(values)} fields; the header names "
                                              f"{len(fieldnames)}")
        else:
            yield _row(row, dict(zip(fieldnames, values)))


def _read_jsonl(path: Path) -> Iterator[BatchRow]:
    for number, line, error in _lines(path):
        if error is not None:
            yield BatchRow(number, "", "", error=error)
            continue
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as json_error:
            yield BatchRow(number, "", "", error=f"line {number} is not valid JSON: {json_error}")
            continue
        if not isinstance(record, dict):
            yield BatchRow(number, "", "", error=f"line {number} is not a JSON object")
            continue
        yield _row(number, record)


def read_batch(path: Path) -> Iterator[BatchRow]:
    """Rows of a ``.csv`` (with a header; RFC 4180 quoting) or ``.jsonl`` batch file; unusable lines come back with
    ``error`` set."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        yield from _read_csv(path)
    elif suffix in (".jsonl", ".ndjson"):
        yield from _read_jsonl(path)
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
    elif (text_error := _text_error(expression)) is not None:
        row.error = text_error
    elif row.output is not None and (Path(row.output).is_absolute() or ".." in Path(row.output).parts):
        row.error = f"output {row.output!r} must be a relative path inside --output_dir"
    elif row.output is not None and Path(row.output).suffix.lower() not in (".png", *GEOTIFF_SUFFIXES):
        row.error = f"output {row.output!r} must be a .png, .tif or .tiff file"
    elif row.vector is not None and (Path(row.vector).is_absolute() or ".." in Path(row.vector).parts):
        row.error = f"vector {row.vector!r} must be a relative path inside --output_dir"
    elif (row.vector or Path(row.output or "").suffix.lower() in GEOTIFF_SUFFIXES) and not has_rasterio():
        row.error = "GeoTIFF and vector outputs need rasterio; install the geo extra: pip install 's4eca-peft[geo]'"
    return row


def _text_error(expression: str) -> str | None:
    """Why ``expression`` is not usable text (non-UTF-8 bytes, a lone surrogate), or None."""
    try:
        _expression_text(expression, "expression")
    except (TypeError, ValueError) as error:
        return str(error)
    return None


def _real(path: Path) -> Path:
    """``path`` with its folder resolved (symbolic links followed); the last part is kept, since a rename replaces
    a link there rather than writing through it."""
    return Path(os.path.realpath(path.parent)) / path.name


def plan_batch(
    rows: list[BatchRow], batch_file: Path, output_dir: Path, overlay: bool, geotiff: bool = False
) -> list[tuple[Path, Path]]:
    """``(image path, mask path)`` of each row, checked before any work.

    A row whose mask or overlay resolves outside ``output_dir`` gets ``error`` set. Raises `ValueError` naming both
    rows when one would write over an input image of the batch or over another row's mask or overlay.
    """
    root = Path(os.path.realpath(output_dir))
    paths = []
    for row in rows:
        image_path = Path(row.image)
        if not image_path.is_absolute():
            image_path = batch_file.parent / image_path
        mask_path = output_dir / (row.output or default_output_name(row.image, row.expression))
        if row.output is None and (geotiff or row.vector):  # GeoTIFF-only options: the default name is a .tif
            mask_path = mask_path.with_suffix(".tif")
        paths.append((image_path, mask_path))
    inputs: dict[Path, int] = {}
    for row, (image_path, _) in zip(rows, paths):
        if row.error is None:
            inputs.setdefault(Path(os.path.realpath(image_path)), row.number)
    written: dict[Path, int] = {}
    conflicts = []
    for row, (_, mask_path) in zip(rows, paths):
        if row.error is not None:
            continue
        for target in [mask_path, overlay_path(mask_path)] if overlay else [mask_path]:
            real = _real(target)
            if not real.is_relative_to(root):
                row.error = f"output {str(target)!r} resolves to {str(real)!r}, outside --output_dir {str(root)!r}"
                break
            if real in inputs:
                conflicts.append(f"row {row.number} would write {str(real)!r}, the input image of row {inputs[real]}")
            elif real in written:
                conflicts.append(f"rows {written[real]} and {row.number} would both write {str(real)!r}")
            written.setdefault(real, row.number)
    if conflicts:
        more = f" (and {len(conflicts) - 5} more)" if len(conflicts) > 5 else ""
        raise ValueError(f"{batch_file}: refused before any prediction, outputs collide: "
                         + "; ".join(conflicts[:5]) + more + ". Give these rows distinct `output` names.")
    return paths


def check_single_output(image: str, output: str, overlay: bool) -> None:
    """Refuse a mask or overlay path that is the input image."""
    source = Path(os.path.realpath(image))
    for target in [Path(output), overlay_path(Path(output))] if overlay else [Path(output)]:
        if _real(target) == source or Path(os.path.realpath(target)) == source:
            raise ValueError(f"--output {output!r}: writing {str(target)!r} would replace the input image {image!r}.")


def write_outputs(image: object, mask: np.ndarray, mask_path: Path, overlay: bool) -> None:
    from .inference.segmenter import overlay_prediction

    save_image_atomic(mask_to_image(mask), mask_path)
    if overlay:
        save_image_atomic(overlay_prediction(image, mask), overlay_path(mask_path))


# --------------------------------------------------------------------------- modes
def predict_one(segmenter, args: argparse.Namespace) -> int:
    from .modeling.image_io import load_image

    if wants_geotiff(args, args.output):
        result = predict_raster(segmenter, args.image, args.expression, args.output, vector=args.vector,
                                bands=args.bands, threshold=args.threshold, cog=args.cog)
        print(f"wrote {result.output}" + (f" and {result.vector}" if result.vector else ""))
        return 0
    mask_path = Path(args.output)
    image = load_image(args.image, name=args.image)  # (H, W, 3) float32, read once for mask and overlay
    mask = segmenter.predict(image, args.expression, threshold=args.threshold)
    write_outputs(image, mask, mask_path, overlay=not args.no_overlay)
    print(f"wrote {mask_path}" + ("" if args.no_overlay else f" and {overlay_path(mask_path)}"))
    return 0


def predict_batch(segmenter, args: argparse.Namespace, rows: list[BatchRow], paths: list[tuple[Path, Path]]) -> int:
    """Predict the rows whose ``(image path, mask path)`` `plan_batch` gave; returns the exit status."""
    from tqdm.auto import tqdm

    from .modeling.image_io import load_image

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
    for row, (image_path, mask_path) in tqdm(list(zip(rows, paths)), desc="s4eca-predict", unit="row"):
        if row.error is not None:
            record_error(row, row.error)
            continue
        if wants_geotiff(args, mask_path) or row.vector:
            vector_path = output_dir / row.vector if row.vector else None
            if not args.overwrite and mask_path.is_file() and (vector_path is None or vector_path.is_file()):
                skipped += 1
                continue
            try:
                predict_raster(segmenter, image_path, row.expression, mask_path, vector=vector_path, bands=args.bands,
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
    elif (text_error := _text_error(args.expression)) is not None:
        parser.error(f"--{text_error}")

    if (args.vector or args.bands or args.cog) and not has_rasterio():
        from .geo.dependencies import GEO_EXTRA_HINT

        parser.error(f"--vector, --bands and --cog need rasterio; {GEO_EXTRA_HINT}.")

    from .inference.segmenter import S4ECASegmenter

    try:
        if args.batch:  # a bad batch file or colliding outputs fail before the adapter is loaded
            rows = list(read_batch(Path(args.batch)))
            paths = plan_batch(rows, Path(args.batch), Path(args.output_dir), overlay=not args.no_overlay,
                               geotiff=bool(args.bands or args.cog))
        else:
            check_single_output(args.image, args.output, overlay=not args.no_overlay)
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
        return predict_batch(segmenter, args, rows, paths) if args.batch else predict_one(segmenter, args)
    except (OSError, ValueError) as error:  # bad adapter, revision, batch file or image: one clear line
        if args.debug:
            raise
        print(f"s4eca-predict: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(predict_main())
