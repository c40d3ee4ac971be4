"""RefSegRS loading from the real layout: TIFF images, 0/255 TIFF masks and output_phrase_<split>.txt."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from loader_checks import load_warning_once
from PIL import Image

from s4eca_peft.cli import prepare_data_main as prepare_data_command
from s4eca_peft.data import (
    load_refsegrs,
    prepare_data_main,
    validate_refsegrs,
    write_refsegrs_layout,
)
from s4eca_peft.data.synthetic import generate_scene

H, W = 24, 32


def mask_values(seed: int) -> np.ndarray:
    """A 0-255 mask with values on both sides of the > 50 threshold."""
    values = np.zeros((H, W), np.uint8)
    values[2 + seed : 9 + seed, 4:12] = 255
    values[15:20, 20:30] = 50  # not foreground
    values[15:20, 5:8] = 51  # foreground
    return values


def write_tif(path: Path, array: np.ndarray) -> None:
    Image.fromarray(array).save(path, format="TIFF")


def write_refsegrs(root: Path, phrases: dict[str, str], ids=(0, 1, 2, 3, 4)) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i in ids:
        write_tif(root / "images" / f"{i}.tif", rng.integers(0, 256, (H, W, 3), dtype=np.uint8))
        write_tif(root / "masks" / f"{i}.tif", mask_values(i))
    for split, text in phrases.items():
        (root / f"output_phrase_{split}.txt").write_text(text, encoding="utf-8-sig" if split == "val" else "utf-8")
    return root


GOOD = {
    "train": "0 the red car on the left\n1  the   large building \n\n2 road\n",
    "val": "3 a tank\n",
    "test": "4 pool\n",
}


def test_samples_expressions_and_exact_masks(tmp_path):
    root = write_refsegrs(tmp_path, GOOD)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        train = load_refsegrs(root, "train")
    assert len(train) == 3 and len(load_refsegrs(root, "test")) == 1
    assert load_refsegrs(root, "val")["sample_id"] == ["3"]  # the val file opens with a byte-order mark
    assert train["expression"] == ["the red car on the left", "the large building", "road"]
    assert train["sample_id"] == train["image_id"] == ["0", "1", "2"]
    assert train["category"] == [None, None, None]
    for i, sample in enumerate(train):
        assert sample["image"].size == (W, H)
        assert sample["mask"].dtype == np.bool_ and sample["mask"].shape == (H, W)
        np.testing.assert_array_equal(sample["mask"], mask_values(i) > 50)
    assert train[0]["mask"][15:20, 20:30].sum() == 0 and train[0]["mask"][15:20, 5:8].all()
    with pytest.raises(ValueError, match="one of train, val, test"):
        load_refsegrs(root, "validation")


def test_missing_phrase_file_names_it(tmp_path):
    root = write_refsegrs(tmp_path, {"train": GOOD["train"], "val": GOOD["val"]})
    assert len(load_refsegrs(root, "train")) == 3
    with pytest.raises(FileNotFoundError, match="output_phrase_test.txt"):
        load_refsegrs(root, "test")


BAD_TRAIN = (
    "0 fine sample\n"
    "9 no such image\n"
    "5 image without mask\n"
    "6 wrong mask size\n"
    "7 empty mask\n"
    "0 duplicate of the first line\n"
    "8\n"
    "10 unreadable image\n"
    "../0 escapes the folder\n"
    "1 another fine sample\n"
)
EXPECTED_PROBLEMS = {
    "missing_image": ["9"],
    "missing_mask": ["5"],
    "unreadable_file": ["10"],
    "wrong_mask_size": ["6"],
    "empty_mask": ["7"],
    "duplicate_id": ["0"],
    "missing_expression": ["8"],
    "malformed_record": ["../0"],
}


@pytest.fixture
def bad_root(tmp_path) -> Path:
    root = write_refsegrs(tmp_path, {"train": BAD_TRAIN, "val": GOOD["val"], "test": GOOD["test"]})
    write_tif(root / "images" / "5.tif", np.zeros((H, W, 3), np.uint8))
    write_tif(root / "images" / "6.tif", np.zeros((H, W, 3), np.uint8))
    write_tif(root / "masks" / "6.tif", np.full((H + 1, W), 255, np.uint8))
    write_tif(root / "images" / "7.tif", np.zeros((H, W, 3), np.uint8))
    write_tif(root / "masks" / "7.tif", np.full((H, W), 50, np.uint8))  # nothing above the threshold
    (root / "images" / "10.tif").write_bytes(b"II*\x00 truncated")
    write_tif(root / "masks" / "10.tif", mask_values(0))
    return root


def test_bad_records_are_skipped_with_one_warning(bad_root):
    train = load_warning_once(lambda: load_refsegrs(bad_root, "train"), EXPECTED_PROBLEMS)
    assert train["sample_id"] == ["0", "1"]
    assert train["expression"] == ["fine sample", "another fine sample"]
    report = validate_refsegrs(bad_root, ["train"])["train"]
    assert {kind: [p.record_id for p in problems] for kind, problems in report.problems.items()} == EXPECTED_PROBLEMS
    assert (report.num_samples, report.num_skipped) == (2, 8)


def test_strict_raises_listing_every_problem(bad_root):
    with pytest.raises(ValueError, match="strict=True") as raised:
        load_refsegrs(bad_root, "train", strict=True)
    text = str(raised.value)
    assert all(kind in text for kind in EXPECTED_PROBLEMS)
    assert "mask" in text and "is 25x32 (HxW), image is 24x32" in text
    assert "line 7: an id without an expression" in text
    # the other splits are clean: strict loading works there
    assert len(load_refsegrs(bad_root, "val", strict=True)) == 1


def test_synthetic_layout_reads_back_exactly(tmp_path):
    root = write_refsegrs_layout(tmp_path / "synthetic", {"train": 3, "val": 2}, image_size=96, seed=7)
    train, val, test = (load_refsegrs(root, split, strict=True) for split in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (3, 2, 0)
    assert val["sample_id"] == ["3", "4"]
    for sample in list(train) + list(val):
        image, mask, expression, _ = generate_scene((7, int(sample["sample_id"])), image_size=96)
        np.testing.assert_array_equal(np.asarray(sample["image"]), np.asarray(image))
        np.testing.assert_array_equal(sample["mask"], mask)
        assert sample["expression"] == expression


def test_cli_prints_counts_and_problems(bad_root, capsys):
    assert prepare_data_main(["--dataset", "refsegrs", "--data_dir", str(bad_root)]) == 0
    out = capsys.readouterr().out
    rows = {
        line.split()[0]: line.split()[1:]
        for line in out.splitlines()
        if line.split()[:1] in (["train"], ["val"], ["test"])
    }
    assert rows == {"train": ["2", "2172", "8"], "val": ["1", "431", "0"], "test": ["1", "1817", "0"]}
    assert "missing_mask: 1" in out and "no mask file" in out
    assert prepare_data_main(["--dataset", "refsegrs", "--data-dir", str(bad_root), "--strict"]) == 1


def test_cli_wrong_layout(tmp_path, capsys):
    root = write_refsegrs(tmp_path, GOOD)
    (root / "output_phrase_val.txt").unlink()
    with pytest.raises(SystemExit) as exited:
        prepare_data_command(["--dataset", "refsegrs", "--data_dir", str(root)])
    err = capsys.readouterr().err
    assert exited.value.code == 2 and err.startswith("s4eca-prepare-data: error: ") and err.count("\n") == 1
    assert "output_phrase_val.txt" in err and "(--debug shows the traceback)" in err
    with pytest.raises(SystemExit) as exited:
        prepare_data_main(["--dataset", "coco", "--data_dir", str(root)])
    assert exited.value.code != 0
