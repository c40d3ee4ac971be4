"""``s4eca-prepare-data``: validate a downloaded dataset folder and compare its split sizes with the papers';
``--push_to_hub REPO`` then publishes the valid records as a prepared dataset (parquet) that the loaders read back."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from .hub import push_prepared_dataset
from .refsegrs import LAYOUT as REFSEGRS_LAYOUT
from .refsegrs import scan_refsegrs
from .rrsisd import LAYOUT as RRSISD_LAYOUT
from .rrsisd import scan_rrsisd

PUBLISHED_SPLIT_SIZES = {
    "rrsisd": {"train": 12181, "val": 1740, "test": 3481},
    "refsegrs": {"train": 2172, "val": 431, "test": 1817},
}
_SCANNERS = {"rrsisd": scan_rrsisd, "refsegrs": scan_refsegrs}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="s4eca-prepare-data",
        description="Validate an RRSIS-D or RefSegRS folder: split sizes next to the published ones, and every "
        "record the loaders would skip. Every image is decoded in full, so truncated files are found here rather "
        f"than during training. Layouts: RRSIS-D: {RRSISD_LAYOUT}; RefSegRS: {REFSEGRS_LAYOUT}",
    )
    parser.add_argument("--dataset", required=True, choices=sorted(_SCANNERS), help="which dataset layout")
    parser.add_argument("--data_dir", "--data-dir", required=True, help="the dataset's root folder")
    parser.add_argument("--strict", action="store_true", help="exit with status 1 when any record is invalid")
    parser.add_argument("--push_to_hub", "--push-to-hub", metavar="REPO", default=None,
                        help="publish the valid records of every split as parquet to this Hub dataset repo (not with "
                        "--strict when problems were found); the loaders read it back with "
                        "load_<dataset>(REPO, split)")
    parser.add_argument("--hub_private", "--hub-private", action="store_true", help="create the Hub repo as private")
    return parser


def prepare_data_main(argv: Sequence[str] | None = None) -> int:
    """``s4eca-prepare-data`` (`s4eca_peft.cli.prepare_data_main` runs it). Returns 0 when valid (or not strict), 1
    when strict and problems were found. A wrong folder layout or metadata file raises (FileNotFoundError,
    `UnsafePickleError`, ValueError) naming the file; the command turns it into one line and exit status 2."""
    args = build_parser().parse_args(argv)
    scanned = _SCANNERS[args.dataset](args.data_dir, decode_images=True)
    published = PUBLISHED_SPLIT_SIZES[args.dataset]
    print(f"{scanned['train'][1].dataset} at {args.data_dir}")
    print(f"{'split':<8}{'samples':>10}{'published':>12}{'skipped':>10}")
    for split, (_, report) in scanned.items():  # train, val, test
        print(f"{split:<8}{report.num_samples:>10}{published[split]:>12}{report.num_skipped:>10}")
    problems = [report for _, report in scanned.values() if not report.ok]
    if problems:
        print("Problems (these records are skipped when loading; strict=True raises):")
        for report in problems:
            print(report.details())
        if args.strict:
            return 1
    else:
        print("No problems found.")
    if args.push_to_hub:
        records = {split: split_records for split, (split_records, _) in scanned.items()}
        url = push_prepared_dataset(records, args.dataset, args.push_to_hub, private=args.hub_private)
        print(f"Published {sum(map(len, records.values()))} samples to {args.push_to_hub}: {url}")
    return 0


if __name__ == "__main__":
    from ..command_errors import run_command

    raise SystemExit(run_command("s4eca-prepare-data", prepare_data_main, None))
