"""RRSIS-D loading from the real layout: refs(unc).p + instances.json + JPEGImages, polygons and both RLEs."""

from __future__ import annotations

import collections
import os
import pickle
import warnings
from pathlib import Path

import datasets
import numpy as np
import pytest
from loader_checks import load_warning_once
from PIL import Image
from rrsisd_layout import (
    GOOD_REFS,
    H,
    W,
    compressed_rle,
    dotted,
    good_layout,
    image_record,
    l_shape,
    polygon_rectangle,
    ref,
    second_airplane,
    sentence,
    uncompressed_rle,
)

from s4eca_peft.cli import prepare_data_main as prepare_data_command
from s4eca_peft.data import (
    UnsafePickleError,
    load_rrsisd,
    load_untrusted_pickle,
    prepare_data_main,
    validate_rrsisd,
)


def test_splits_samples_and_exact_masks(tmp_path):
    root = good_layout(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a clean folder loads without any warning
        train, val, test = (load_rrsisd(root, split) for split in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (3, 1, 1)
    assert {"image", "mask", "expression", "image_id", "sample_id", "category"} <= set(train.column_names)
    # images stay on disk as paths until a row is read
    assert isinstance(train.features["image"], datasets.Image)
    stored = train.data.column("image")[0].as_py()
    assert stored["bytes"] is None and stored["path"].endswith("00001.jpg")

    first, second, third = train[0], train[1], train[2]
    assert [first["sample_id"], second["sample_id"], third["sample_id"]] == ["1_100", "1_101", "2_102"]
    assert first["expression"] == "The airplane on the LEFT"  # the raw sentence, as written
    assert second["expression"] == "white plane"  # whitespace normalised
    assert (first["image_id"], first["category"], third["category"]) == ("1", "airplane", "building")
    assert isinstance(first["image"], Image.Image) and first["image"].size == (W, H)
    for sample, expected in (
        (first, polygon_rectangle()),
        (third, l_shape()),
        (val[0], dotted()),
        (test[0], l_shape()),
    ):
        assert sample["mask"].dtype == np.bool_ and sample["mask"].shape == (H, W)
        np.testing.assert_array_equal(sample["mask"], expected)
    # the transform survives select/shuffle
    np.testing.assert_array_equal(train.select([2])[0]["mask"], l_shape())


def test_every_sample_carries_the_mask_of_every_object_of_its_category_in_its_image(tmp_path):
    root = good_layout(tmp_path)
    train, val, test = (load_rrsisd(root, split) for split in ("train", "val", "test"))
    # image 1 holds two airplanes (annotations 11 and 15) and a building (14): ref 1 names the first airplane
    first = train[0]
    np.testing.assert_array_equal(first["category_mask"], polygon_rectangle() | second_airplane())
    assert (first["category_mask"] >= first["mask"]).all() and first["category_mask"].sum() > first["mask"].sum()
    # ref 4 names the building of the same image, the only one of its category there: its own mask
    np.testing.assert_array_equal(test[0]["category_mask"], l_shape())
    np.testing.assert_array_equal(val[0]["category_mask"], dotted())
    assert train.features["category_mask"] == train.features["mask"]


def test_a_broken_annotation_of_the_targets_category_invalidates_the_ref_naming_it(tmp_path):
    broken = {"id": 16, "image_id": 3, "category_id": 1, "segmentation": [[1, 2, 3]]}
    root = good_layout(tmp_path, annotations=[broken])
    report = validate_rrsisd(root, ["val"])["val"]
    (problem,) = report.problems["malformed_record"]
    assert problem.record_id == "ref 3" and "annotation 16" in problem.detail
    assert report.num_samples == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the refs of other images are not affected
        assert len(load_rrsisd(root, "train")) == 3


def test_split_name_is_checked(tmp_path):
    with pytest.raises(ValueError, match="train, val, test.*'testA'"):
        load_rrsisd(good_layout(tmp_path), "testA")


@pytest.mark.parametrize("missing", ["rrsisd/refs(unc).p", "rrsisd/instances.json", "images/rrsisd/JPEGImages"])
def test_wrong_layout_names_the_missing_path(tmp_path, missing):
    root = good_layout(tmp_path)
    target = root / missing
    if target.is_dir():
        for child in target.iterdir():
            child.unlink()
        target.rmdir()
    else:
        target.unlink()
    with pytest.raises(FileNotFoundError, match=missing.split("/")[-1].replace("(", r"\(").replace(")", r"\)")):
        load_rrsisd(root, "train")


BAD_REFS = [
    ref(20, 20, 20, "train", [sentence("image file missing", 200)]),
    ref(21, 21, 21, "train", [sentence("image record missing", 210)]),
    ref(22, 22, 22, "train", [sentence("unreadable image", 220)]),
    ref(23, 23, 23, "train", [sentence("image smaller than instances.json says", 230)]),
    ref(24, 24, 2, "train", [sentence("rle of another size", 240), sentence("second sentence", 241)]),
    ref(25, 25, 2, "train", [sentence("empty mask", 250)]),
    ref(1, 11, 1, "train", [sentence("a second ref 1", 199)]),
    ref(26, 12, 2, "train", [{"raw": "", "sent": "  ", "sent_id": 260}, sentence("kept sentence", 261)]),
    ref(27, 999, 2, "train", [sentence("annotation missing", 270)]),
    {"ref_id": 28, "ann_id": 12, "image_id": 2, "split": "train"},
    "not a ref",
]
BAD_ANNOTATIONS = [
    {"id": 20, "image_id": 20, "category_id": 1, "segmentation": [[1, 1, 9, 1, 9, 9]]},
    {"id": 22, "image_id": 22, "category_id": 1, "segmentation": [[1, 1, 9, 1, 9, 9]]},
    {"id": 23, "image_id": 23, "category_id": 1, "segmentation": [[1, 1, 9, 1, 9, 9]]},
    {"id": 24, "image_id": 2, "category_id": 1, "segmentation": compressed_rle(np.ones((10, 10), bool))},
    {"id": 25, "image_id": 2, "category_id": 1, "segmentation": uncompressed_rle(np.zeros((H, W), bool))},
]
BAD_IMAGES = [image_record(20, "missing.jpg"), image_record(22, "garbage.jpg"), image_record(23, "small.jpg")]
BAD_FILES = {"garbage.jpg": b"this is not a JPEG", "small.jpg": (30, 30)}
EXPECTED_PROBLEMS = {
    "missing_image": ["ref 20", "ref 21"],
    "missing_annotation": ["ref 27"],
    "unreadable_file": ["ref 22"],
    "wrong_mask_size": ["ref 23", "ref 24"],
    "empty_mask": ["ref 25"],
    "duplicate_id": ["ref 1"],
    "missing_expression": ["26_260"],
    "malformed_record": ["refs[13]", "refs[14]"],
}


@pytest.fixture
def bad_root(tmp_path) -> Path:
    return good_layout(tmp_path, BAD_REFS, BAD_ANNOTATIONS, BAD_IMAGES, BAD_FILES)


def test_bad_records_are_skipped_with_one_warning(bad_root):
    train = load_warning_once(lambda: load_rrsisd(bad_root, "train"), EXPECTED_PROBLEMS)
    # the good samples and the good sentence of ref 26 survive, nothing else
    assert train["sample_id"] == ["1_100", "1_101", "2_102", "26_261"]
    np.testing.assert_array_equal(train[3]["mask"], l_shape())

    report = validate_rrsisd(bad_root)["train"]
    assert {kind: [p.record_id for p in problems] for kind, problems in report.problems.items()} == EXPECTED_PROBLEMS
    assert report.num_samples == 4
    assert report.num_skipped == 12  # 9 sentences of skipped refs, 1 empty sentence, 2 malformed entries
    # the unplaceable entry is reported with every split
    val_report = validate_rrsisd(bad_root, ["val"])["val"]
    assert val_report.counts() == {"malformed_record": 1} and val_report.num_samples == 1


def test_strict_raises_listing_every_problem(bad_root):
    with pytest.raises(ValueError, match="strict=True") as raised:
        load_rrsisd(bad_root, "train", strict=True)
    text = str(raised.value)
    for kind, ids in EXPECTED_PROBLEMS.items():
        assert kind in text and all(record_id in text for record_id in ids)
    assert "no image file" in text and "annotation id 999" in text


# --------------------------------------------------------------------------- untrusted pickle
class Custom:
    pass


class Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize(
    "make, refused",
    [
        (lambda tmp: [collections.OrderedDict(a=1)], "collections.OrderedDict"),
        (lambda tmp: [{"ref": Custom()}], "Custom"),
        (lambda tmp: [Payload(tmp / "pwned")], "system"),
    ],
)
def test_unpickler_refuses_anything_but_builtins(tmp_path, make, refused):
    root = good_layout(tmp_path / "data")
    refs_file = root / "rrsisd" / "refs(unc).p"
    refs_file.write_bytes(pickle.dumps(make(tmp_path)))
    with pytest.raises(UnsafePickleError, match=r"refs\(unc\)\.p: refusing to unpickle .*" + refused):
        load_rrsisd(root, "train")
    assert not (tmp_path / "pwned").exists()  # the payload never ran
    with pytest.raises(UnsafePickleError, match=refused):
        prepare_data_main(["--dataset", "rrsisd", "--data_dir", str(root)])


@pytest.mark.parametrize("protocol", [0, 2, pickle.HIGHEST_PROTOCOL])
def test_unpickler_accepts_plain_data(tmp_path, protocol):
    data = [{"a": (1, 2.5, None, True), "b": {3, 4}, "c": frozenset({"x"}), "d": b"raw", "e": [complex(1, 2)]}]
    path = tmp_path / "plain.p"
    path.write_bytes(pickle.dumps(data, protocol=protocol))
    assert load_untrusted_pickle(path) == data


def test_corrupt_metadata_is_a_clear_error(tmp_path):
    root = good_layout(tmp_path)
    (root / "rrsisd" / "refs(unc).p").write_bytes(pickle.dumps(GOOD_REFS)[:-20])
    with pytest.raises(ValueError, match=r"refs\(unc\)\.p: not a readable pickle"):
        load_rrsisd(root, "train")
    (root / "rrsisd" / "refs(unc).p").write_bytes(pickle.dumps({"refs": GOOD_REFS}))
    with pytest.raises(ValueError, match="expected a list of refs"):
        load_rrsisd(root, "train")
    (root / "rrsisd" / "refs(unc).p").write_bytes(pickle.dumps(GOOD_REFS))
    (root / "rrsisd" / "instances.json").write_text("{not json")
    with pytest.raises(ValueError, match="instances.json: not valid JSON"):
        load_rrsisd(root, "train")


# --------------------------------------------------------------------------- CLI
def test_cli_prints_counts_next_to_published(tmp_path, capsys):
    root = good_layout(tmp_path)
    assert prepare_data_main(["--dataset", "rrsisd", "--data_dir", str(root), "--strict"]) == 0
    out = capsys.readouterr().out
    rows = {
        line.split()[0]: line.split()[1:]
        for line in out.splitlines()
        if line.split()[:1] in (["train"], ["val"], ["test"])
    }
    assert rows == {"train": ["3", "12181", "0"], "val": ["1", "1740", "0"], "test": ["1", "3481", "0"]}
    assert "No problems found." in out


def test_cli_reports_problems_and_strict_exit_code(bad_root, capsys):
    assert prepare_data_main(["--dataset", "rrsisd", "--data_dir", str(bad_root)]) == 0
    out = capsys.readouterr().out
    assert "missing_annotation: 1" in out and "ref 27: annotation id 999 is not in instances.json" in out
    assert prepare_data_main(["--dataset", "rrsisd", "--data_dir", str(bad_root), "--strict"]) == 1


def test_cli_wrong_layout_exits_nonzero_naming_the_file(tmp_path, capsys):
    root = good_layout(tmp_path)
    (root / "rrsisd" / "instances.json").unlink()
    with pytest.raises(SystemExit) as exited:
        prepare_data_command(["--dataset", "rrsisd", "--data_dir", str(root)])
    err = capsys.readouterr().err
    assert exited.value.code == 2 and err.startswith("s4eca-prepare-data: error: ") and err.count("\n") == 1
    assert "instances.json" in err and "Traceback" not in err
    with pytest.raises(FileNotFoundError, match="instances.json"):  # --debug: the error itself, with its traceback
        prepare_data_command(["--dataset", "rrsisd", "--data_dir", str(root), "--debug"])
