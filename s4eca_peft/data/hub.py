"""Datasets on the Hugging Face Hub (docs/data.md): a dataset repo holding the official zip (unpacked once per commit
into the Hub cache), or a prepared dataset in parquet written by `push_prepared_dataset`, its rows validated again.
"""

from __future__ import annotations

import json
import os
import re
import stat
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

import datasets
import pyarrow

from ..files import hub_snapshot, is_hub_id, parse_json, private_folder, snapshot_commit, write_text_atomic
from .records import (
    COLUMNS,
    FEATURES,
    OPTIONAL_FEATURES,
    check_encoded_record,
    decode_masks,
    features_for,
    records_to_dataset,
)
from .validation import SPLITS, InvalidRecord, ValidationReport, check_split

MANIFEST = "s4eca_dataset.json"
PARQUET_DIR = "data"
ROWS_PER_SHARD = 500
UNPACKED_DIR = "s4eca-unpacked"
SPLIT_COLUMN = "split"
PREPARED_FEATURES = datasets.Features({**FEATURES, SPLIT_COLUMN: datasets.Value("string")})
"""The parquet rows of a prepared dataset: the loaders' columns and each row's split (and each of the records'
`OPTIONAL_FEATURES` that every record of the split carries, such as RRSIS-D's ``category_mask``)."""
FORMAT_VERSION = 3  # 1: no split column; 2: no category_mask column


# ----------------------------------------------------------------------------- where a dataset is read from
def dataset_folder(root: str | os.PathLike, revision: str | None = None, cache_dir: str | os.PathLike | None = None,
                   token: Any = None) -> Path:
    """The folder a loader reads: ``root`` itself when it is a folder (or not a Hub id: the layout check then names
    what is missing); for a Hub dataset repo id, its snapshot at ``revision`` when it holds a prepared dataset,
    else the unpacked contents of its one ``.zip``."""
    path = Path(root)
    if path.is_dir() or not is_hub_id(root):
        if revision is not None:
            raise ValueError(f"{str(root)!r} is a folder, not a Hub dataset repo: revision {revision!r} cannot apply.")
        return path
    snapshot = hub_snapshot(str(root), revision, repo_type="dataset", cache_dir=cache_dir, token=token)
    if (snapshot / MANIFEST).is_file():
        return snapshot
    archives = sorted(snapshot.rglob("*.zip"))
    if len(archives) != 1:
        found = [archive.relative_to(snapshot).as_posix() for archive in archives]
        raise ValueError(f"Hub dataset repo {str(root)!r} at revision {revision or 'main'!r} holds neither {MANIFEST} "
                         f"(a prepared dataset) nor exactly one .zip (found {found}).")
    from huggingface_hub import constants

    cache = Path(cache_dir or constants.HF_HUB_CACHE) / UNPACKED_DIR / f"datasets--{str(root).replace('/', '--')}"
    target = cache / snapshot_commit(snapshot) / archives[0].stem
    if not target.is_dir():
        unpack_zip(archives[0], target)
    return _layout_root(target)


def _layout_root(folder: Path) -> Path:
    """``folder``, or the single folder it wraps (archives often hold one top-level folder)."""
    while True:
        entries = [entry for entry in folder.iterdir() if entry.name != "__MACOSX"]
        if len(entries) != 1 or not entries[0].is_dir():
            return folder
        folder = entries[0]


def relative_parts(name: str) -> tuple[str, ...] | None:
    """The parts of ``name`` when it is a plain relative POSIX path that stays inside its folder; None for an
    absolute path, a drive, a backslash, ``.``/``..`` parts or a NUL byte."""
    parts = PurePosixPath(name).parts
    if (not parts or name.startswith("/") or "\\" in name or "\0" in name or re.match(r"^[A-Za-z]:", name)
            or any(part in ("..", ".") for part in parts)):
        return None
    return parts


def unpack_zip(archive: str | os.PathLike, target: str | os.PathLike) -> Path:
    """Unpack ``archive`` into the new folder ``target``: every entry is checked first (no absolute paths, no
    ``..``, no links, no duplicates), then written to a temporary folder beside ``target`` and moved in with one
    rename, so a reader never sees a partial folder. Raises ValueError naming the archive and the entry."""
    archive, target = Path(archive), Path(target)
    try:
        handle = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as error:
        raise ValueError(f"{str(archive)!r} is not a readable zip archive: {error}") from error
    with handle, private_folder(target, prefix=f".tmp-{target.name}-") as staging:
        seen: set[tuple[str, ...]] = set()
        for info in handle.infolist():  # no entry may write outside the target folder, be a link or come twice
            mode, parts = info.external_attr >> 16, relative_parts(info.filename)
            entry = f"{str(archive)!r}: entry {info.filename!r}"
            if stat.S_ISLNK(mode):
                raise ValueError(f"{entry} is a symbolic link; links are refused.")
            if stat.S_IFMT(mode) and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):  # no type bits: a plain entry
                raise ValueError(f"{entry} is not a plain file or folder; refused.")
            if parts is None:
                raise ValueError(f"{entry} is not a relative path inside the archive (absolute, '..', drive or "
                                 "backslash); refused.")
            if parts in seen:
                raise ValueError(f"{entry} appears twice; refused.")
            seen.add(parts)
        try:
            handle.extractall(staging)  # every name checked above, so each lands where it says
        except (zipfile.BadZipFile, OSError) as error:
            detail = f"{str(archive)!r} cannot be unpacked (a damaged entry or clashing names): {error}"
            raise ValueError(detail) from error
        try:
            os.rename(staging, target)
        except OSError:
            if not target.is_dir():  # another process may have unpacked the same commit meanwhile
                raise
    return target


def read_dataset_split(dataset: str, name: str, scan: Callable[..., dict], root: str | os.PathLike, split: str,
                       strict: bool, revision: str | None, cache_dir: str | os.PathLike | None,
                       token: Any) -> datasets.Dataset:
    """What `load_refsegrs` and `load_rrsisd` share: find the folder (`dataset_folder`), read a prepared dataset
    back, or ``scan`` the folder (`scan_rrsisd`, `scan_refsegrs`); then warn about (or, ``strict``, raise on) the
    records skipped. ``name`` is the dataset's name in reports (``RefSegRS``)."""
    folder = dataset_folder(root, revision, cache_dir, token)
    if (folder / MANIFEST).is_file():
        table, report = read_prepared_split(folder, dataset, split, name, cache_dir)
    else:
        records, report = scan(folder, [split])[split]
        table = records_to_dataset(records)
    report.finish(strict, stacklevel=4)
    return table


# ----------------------------------------------------------------------------- prepared datasets (parquet)
def read_prepared_split(folder: Path, dataset: str, split: str, name: str,
                        cache_dir: str | os.PathLike | None = None) -> tuple[datasets.Dataset, ValidationReport]:
    """The valid rows of the ``split`` of the prepared dataset in ``folder`` and the report (``name`` names the
    dataset there) of those skipped. The manifest must name ``dataset`` and list files inside the folder, each with
    the prepared columns."""
    manifest_file = folder / MANIFEST
    split = check_split(split)
    try:
        manifest = parse_json(manifest_file.read_bytes(), str(manifest_file))
        recorded, files = manifest["dataset"], list(manifest["splits"][split]["files"])
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{str(manifest_file)!r} is not a prepared-dataset manifest with split {split!r} (expected "
                         f'{{"dataset": ..., "splits": {{"{split}": {{"files": [...]}}}}}}): {error!r}') from error
    if recorded != dataset:
        raise ValueError(f"{str(folder)!r} holds a prepared {recorded!r} dataset, not {dataset!r}.")
    outside = [name for name in files if not isinstance(name, str) or relative_parts(name) is None]
    missing = [] if outside else [name for name in files if not (folder / name).is_file()]
    if outside or missing:
        raise ValueError(f"{str(manifest_file)!r}: split {split!r} lists files outside the folder {outside} or "
                         f"missing {missing}.")
    report = ValidationReport(name, split)
    keep = _valid_rows(folder, files, split, report)
    report.num_samples = len(keep)
    if not files:
        return records_to_dataset([]), report
    cache = str(cache_dir) if cache_dir else None
    table = datasets.Dataset.from_parquet([str(folder / name) for name in files], cache_dir=cache)
    if SPLIT_COLUMN in table.column_names:
        table = table.remove_columns(SPLIT_COLUMN)
    if len(keep) != len(table):
        table = table.select(keep)
    try:
        features = features_for(table.column_names)
        table = table.cast(features)
    except (TypeError, ValueError, pyarrow.ArrowException) as error:
        raise ValueError(f"{str(folder)!r}: split {split!r} has column types {table.features}, expected {features}: "
                         f"{error}") from error
    return table.with_transform(decode_masks), report


def _valid_rows(folder: Path, files: list[str], split: str, report: ValidationReport) -> list[int]:
    """Positions (over ``files`` in order) of the rows that pass `check_encoded_record`; each other row is added to
    ``report`` as ``<file> row <n>`` (0-based within its file). A file that is not parquet with the prepared columns
    (all files of a split alike) raises a ValueError naming it."""
    import pyarrow.parquet

    keep: list[int] = []
    offset, columns = 0, None
    for name in files:
        try:
            table = pyarrow.parquet.read_table(folder / name)
        except (OSError, pyarrow.ArrowException) as error:
            raise ValueError(f"{str(folder / name)!r} is not a readable parquet file: {error}") from error
        found = sorted(table.column_names)
        required = sorted(set(found) - set(OPTIONAL_FEATURES))
        if required not in (sorted(COLUMNS), sorted(PREPARED_FEATURES)) or (columns is not None and found != columns):
            raise ValueError(f"{str(folder / name)!r} (split {split!r}) has columns {table.column_names}, expected "
                             f"{list(PREPARED_FEATURES)} (and optionally {list(OPTIONAL_FEATURES)}) in every file of the "
                             "split.")
        columns = found
        for number, row in enumerate(table.to_pylist()):
            try:
                check_encoded_record(row, split)
                keep.append(offset + number)
            except InvalidRecord as error:
                report.add(error.kind, f"{name} row {number}", error.detail)
        offset += table.num_rows
    return keep


def write_prepared_dataset(records_per_split: dict[str, list[dict[str, Any]]], dataset: str,
                           out_dir: str | os.PathLike) -> list[str]:
    """Write the records of each split (the scanners' records: ``image`` a file path, ``mask`` RLE) as parquet
    shards with the image files' bytes embedded, plus the manifest and a dataset card; returns the written paths
    relative to ``out_dir``."""
    out = Path(out_dir)
    manifest: dict[str, Any] = {"dataset": dataset, "format_version": FORMAT_VERSION, "splits": {}}
    written: list[str] = []
    written_optional: set[str] = set()
    for split in SPLITS:
        records = records_per_split.get(split, [])
        optional = [name for name in OPTIONAL_FEATURES if records and all(name in record for record in records)]
        features = datasets.Features({**PREPARED_FEATURES, **{name: OPTIONAL_FEATURES[name] for name in optional}})
        written_optional.update(optional)
        shards = max(1, -(-len(records) // ROWS_PER_SHARD))
        files = [f"{PARQUET_DIR}/{split}-{i:05d}-of-{shards:05d}.parquet" for i in range(shards)]
        for index, name in enumerate(files):
            chunk = records[index * ROWS_PER_SHARD : (index + 1) * ROWS_PER_SHARD]
            rows = [dict(r, image={"bytes": Path(r["image"]).read_bytes(), "path": Path(r["image"]).name}, split=split)
                    for r in chunk]
            columns = {column: [row[column] for row in rows] for column in features}
            (out / name).parent.mkdir(parents=True, exist_ok=True)
            datasets.Dataset.from_dict(columns, features=features).to_parquet(str(out / name))
        manifest["splits"][split] = {"num_samples": len(records), "files": files}
        written += files
    write_text_atomic(out / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True))
    write_text_atomic(out / "README.md", _dataset_card(dataset, manifest, sorted(written_optional)))
    return [*written, MANIFEST, "README.md"]


def _dataset_card(dataset: str, manifest: dict[str, Any], optional: list[str]) -> str:
    data_files = "".join(f"  - split: {split}\n    path: {PARQUET_DIR}/{split}-*.parquet\n" for split in SPLITS
                         if manifest["splits"][split]["num_samples"])
    sizes = ", ".join(f"{split} {manifest['splits'][split]['num_samples']}" for split in SPLITS)
    extra = "".join(f", `{name}`" for name in optional)
    return (
        f"---\nconfigs:\n- config_name: default\n  data_files:\n{data_files}tags:\n- s4eca\n"
        "- referring-image-segmentation\n- remote-sensing\n---\n\n"
        f"# {dataset} (prepared by s4eca-peft)\n\nSamples per split: {sizes}. Columns: `image` (the original file's "
        "bytes), `mask` (compressed COCO RLE: `size` [H, W] and `counts`), `expression`, `image_id`, `sample_id`, "
        f"`category`, `split`{extra}.\n\n```python\nfrom s4eca_peft.data import load_{dataset}\n\n"
        f'val = load_{dataset}("<this repo id>", "val")  # masks decoded to (H, W) booleans\n```\n'
    )


def push_prepared_dataset(records_per_split: dict[str, list[dict[str, Any]]], dataset: str, repo_id: str,
                          private: bool = False) -> str:
    """Publish the records of each split as a prepared dataset (`write_prepared_dataset`) in one commit of the Hub
    dataset repo ``repo_id`` (created when missing); returns the commit URL."""
    from huggingface_hub import CommitOperationAdd, HfApi

    api = HfApi()
    with tempfile.TemporaryDirectory(prefix="s4eca-prepared-") as staging:
        written = write_prepared_dataset(records_per_split, dataset, staging)
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(Path(staging) / name))
                      for name in written]
        commit = api.create_commit(repo_id, operations, repo_type="dataset",
                                   commit_message=f"Prepared {dataset} (s4eca-prepare-data)")
    return commit.commit_url
