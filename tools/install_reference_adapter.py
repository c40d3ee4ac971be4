"""Install a trained run's adapter folder as the package's reference adapter (``package:s4eca-peft/reference-adapter``).

    python tools/install_reference_adapter.py outputs/default_run                 # into s4eca_peft/reference_adapter/
    python tools/install_reference_adapter.py outputs/default_run --target DIR    # anywhere else

Only the files an adapter folder needs are copied, by the allow-list the Hub push uses
(``s4eca_peft.training.hub.PUBLISHED_FILES``): the adapter (``adapter_config.json``, ``adapter_model.safetensors``),
the processor (``s4eca_processor_config.json`` and the tokenizer files), the base config (``s4eca_base/config.json``),
``s4eca_metadata.json``, the card (``README.md``, ``widget/scene.png``) and ``eval_results.json``. Everything else in the run folder (checkpoints, logs, pictures) is left behind and listed.
The card is addressed to the reference (its title, usage line and model-index name say
``package:s4eca-peft/reference-adapter`` instead of the run folder's name; no Hub widget).
The install is refused, with nothing written, when the adapter folder holds a pickled file (``.bin``, ``.pt`` ...:
weights load through safetensors only), a link, or an ``s4eca_base/model.safetensors`` larger than 1 MB (the run
copied its frozen encoders: the reference must name them by package reference, such as
``package:s4eca-peft/swin-synthetic-aerial``, so that only the adapter and head ship). The files are copied into a
new folder beside the target, checked as the loaders check an adapter folder, and renamed into place.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from s4eca_peft.adapter_folder import (
    ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
    BASE_DIR,
    PUBLISHED_FILES,
    RUN_LEVEL_FILES,
    adapter_root,
    check_adapter_files,
)
from s4eca_peft.files import PICKLE_SUFFIXES
from s4eca_peft.modeling.packaged import REFERENCE_ADAPTER
from s4eca_peft.modeling.processing import PROCESSOR_CONFIG_NAME
from s4eca_peft.training.model_card import address_card
from s4eca_peft.tuner.checks import check_adapter_folder

DEFAULT_TARGET = Path(__file__).resolve().parents[1] / "s4eca_peft" / "reference_adapter"
REQUIRED = (ADAPTER_CONFIG, ADAPTER_WEIGHTS, PROCESSOR_CONFIG_NAME, f"{BASE_DIR}/config.json", "README.md",
            "eval_results.json")
ALLOWED = frozenset(PUBLISHED_FILES)
"""Paths, relative to the adapter folder, that are copied: those the Hub push publishes."""
ADAPTER_LEVELS = ("", BASE_DIR, "widget")
"""Folders of an adapter folder (its top level included): a pickled file or a link there refuses the install."""
MAX_BASE_BYTES = 1_000_000


class InstallError(ValueError):
    """The folder cannot be installed as the reference adapter (nothing was written)."""


def candidates(source: Path) -> tuple[dict[str, Path], list[str]]:
    """``(files the reference may take, by their path in it; files of the run folder it never takes)``: the adapter
    folder's files (a run folder's ``adapter/``, or ``source`` itself when it is a plain adapter folder), and the run's
    own card and results, which win over copies of them inside the adapter folder."""
    adapter = adapter_root(source)
    found = {path.relative_to(adapter).as_posix(): path for path in sorted(adapter.rglob("*"))}
    outside: list[str] = []
    if adapter == source:
        return found, outside
    for path in sorted(source.rglob("*")):
        relative = path.relative_to(source).as_posix()
        if path.is_relative_to(adapter) or path.is_dir():
            continue
        if relative in RUN_LEVEL_FILES:
            if relative in found:
                outside.append(f"{adapter.name}/{relative}")
            found[relative] = path
        else:
            outside.append(relative)
    return found, outside


def plan(source: Path) -> tuple[dict[str, Path], list[str]]:
    """``(files to copy by their path in the reference, files left behind)`` of the run folder ``source``; raises
    `InstallError` naming what refuses the install."""
    if not source.is_dir():
        raise InstallError(f"{source}: not a folder (give a trained run's output folder).")
    found, left = candidates(source)
    copied = {}
    for relative, path in found.items():
        parent = relative.rpartition("/")[0]
        in_adapter = parent in ADAPTER_LEVELS
        if path.is_symlink() and (in_adapter or relative in ALLOWED):
            raise InstallError(f"{path}: a link; the reference adapter holds plain files only.")
        if path.is_dir():
            continue
        if in_adapter and path.suffix.lower() in PICKLE_SUFFIXES:
            raise InstallError(f"{path}: a pickled file in the adapter folder; weights are loaded with safetensors "
                               "only, never unpickled. Remove it (or convert it to safetensors) first.")
        if relative in ALLOWED:
            copied[relative] = path
        else:
            left.append(relative)
    missing = [name for name in REQUIRED if name not in copied]
    if missing:
        raise InstallError(f"{source}: not a finished run's adapter folder; missing {', '.join(missing)}.")
    base = copied.get(f"{BASE_DIR}/model.safetensors")
    if base is not None and base.stat().st_size > MAX_BASE_BYTES:
        raise InstallError(
            f"{base} is {base.stat().st_size:,} bytes (more than {MAX_BASE_BYTES:,}): the run copied its frozen "
            "encoders into the adapter folder. The reference adapter must name them by package reference "
            f"(recorded in {BASE_DIR}/config.json, e.g. package:s4eca-peft/swin-synthetic-aerial) so that only the "
            "adapter and head ship."
        )
    return copied, left


def install(source: str | os.PathLike, target: str | os.PathLike = DEFAULT_TARGET) -> tuple[Path, list[str]]:
    """Copy the allow-listed files of ``source`` into ``target`` atomically (a new folder beside it, checked, then
    renamed into place; a previous reference is replaced whole). Returns ``(target, files left behind)``."""
    source, target = Path(source), Path(target)
    copied, left = plan(source)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".tmp-{target.name}-"))
    previous = target.with_name(f".old-{target.name}-{os.getpid()}")
    try:
        for relative, path in copied.items():
            destination = staging / relative
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, destination)
        card = staging / "README.md"
        card.write_text(address_card(card.read_text(encoding="utf-8"), REFERENCE_ADAPTER), encoding="utf-8")
        try:
            check_adapter_files(staging)
            check_adapter_folder(staging)
        except (OSError, ValueError) as error:
            raise InstallError(f"{source}: the adapter does not pass the loaders' checks: {error}") from error
        replacing = target.exists()
        if replacing:
            os.rename(target, previous)
        try:
            staging.chmod(0o755)  # a temporary folder is private to its owner; the installed one is package data
            os.rename(staging, target)
        except OSError:
            if replacing:
                os.rename(previous, target)  # the previous reference stays in place
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(previous, ignore_errors=True)
    return target, left


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="A trained run's output folder (its adapter/ and card), or an adapter folder.")
    parser.add_argument("--target", default=str(DEFAULT_TARGET), help=f"Where to install (default: {DEFAULT_TARGET}).")
    args = parser.parse_args(argv)
    try:
        target, left = install(args.source, args.target)
    except InstallError as error:
        print(f"install_reference_adapter: {error}", file=sys.stderr)
        return 2
    print(f"installed {args.source} as the reference adapter in {target}")
    if left:
        print(f"left behind ({len(left)} files not on the allow-list): {', '.join(left[:10])}"
              + (" ..." if len(left) > 10 else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
