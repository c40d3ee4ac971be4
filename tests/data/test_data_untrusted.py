"""Hostile and careless dataset files: refused or reported, never a crash, a memory blow-up or a silent pass."""

from __future__ import annotations

import pickle
import struct

import numpy as np
import pytest
from memory_cap import run_capped
from PIL import Image
from rrsisd_layout import GOOD_REFS, H, W, good_layout, image_record, ref, sentence

from s4eca_peft.data import (
    UnsafePickleError,
    load_untrusted_pickle,
    prepare_data_main,
    segmentation_to_rle,
)
from s4eca_peft.data.transforms import TrainTransform

# --------------------------------------------------------------------------- polygons before pycocotools
BAD_POLYGONS = {
    30: [[10, 5, float("nan"), 5, 30, 20, 10, 20]],
    31: [[10, 5, 1e9, 5, 1e9, 1e9, 10, 20]],
    32: [[10, 5, float("inf"), 5, 30, 20]],
    33: [[0, 0, W, H] * 3000],  # a zig-zag outline 3000 times across the image
}


def bad_polygon_layout(root):
    refs = [ref(i, i, i, "train", [sentence(f"object {i}", i * 10)]) for i in BAD_POLYGONS]
    annotations = [{"id": i, "image_id": i, "category_id": 1, "segmentation": s} for i, s in BAD_POLYGONS.items()]
    images = [image_record(i, "00001.jpg") for i in BAD_POLYGONS]
    return good_layout(root, refs, annotations, images)  # json writes NaN / Infinity, and reads them back


@pytest.mark.slow
def test_bad_polygon_coordinates_are_reported_and_skipped_under_a_memory_cap(tmp_path):
    root = bad_polygon_layout(tmp_path / "data")
    result = run_capped(
        f"""
        import warnings
        from s4eca_peft.data import load_rrsisd, validate_rrsisd
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            train = load_rrsisd({str(root)!r}, "train")
        print("kept", list(train["sample_id"]))
        print(validate_rrsisd({str(root)!r}, ["train"])["train"].details())
        try:
            load_rrsisd({str(root)!r}, "train", strict=True)
        except ValueError as error:
            print("strict raised", "ref 31" in str(error))
        """
    )
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    assert "kept ['1_100', '1_101', '2_102']" in out
    assert "malformed_record: 4" in out
    assert "ref 30: annotation 30: cannot decode segmentation: polygon 0 has a NaN or infinite coordinate" in out
    assert "ref 31: annotation 31: cannot decode segmentation: polygon 0 has x coordinates in [10, 1e+09]" in out
    assert "ref 32: annotation 32: cannot decode segmentation: polygon 0 has a NaN or infinite" in out
    assert "ref 33: annotation 33: cannot decode segmentation: polygon outlines are" in out
    assert "strict raised True" in out


def test_polygons_slightly_outside_the_image_still_rasterise():
    rle = segmentation_to_rle([[-5, -5, W + 5, -5, W + 5, H + 5, -5, H + 5]], H, W)
    assert rle["size"] == [H, W]
    with pytest.raises(ValueError, match=r"y coordinates in \[-5, 200\].*accepted: \[-40, 80\]"):
        segmentation_to_rle([[0, -5, 10, 0, 10, 200]], H, W)


# --------------------------------------------------------------------------- truncated images
def truncated_jpeg(path):
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (H, W, 3), dtype=np.uint8)).save(path, format="JPEG")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_prepare_data_decodes_every_image_and_names_a_truncated_one(tmp_path, capsys):
    root = good_layout(tmp_path)
    image = root / "images" / "rrsisd" / "JPEGImages" / "00002.jpg"
    truncated_jpeg(image)
    assert prepare_data_main(["--dataset", "rrsisd", "--data_dir", str(root), "--strict"]) == 1
    out = capsys.readouterr().out
    assert "No problems found" not in out
    assert f"ref 2: cannot read image {image}" in out and "truncated" in out


def test_a_truncated_image_during_training_names_its_file(tmp_path):
    path = tmp_path / "broken.jpg"
    truncated_jpeg(path)
    with pytest.raises(ValueError, match=rf"sample 's1' image: cannot read image file '{path}'.*truncated"):
        TrainTransform()({"image": str(path), "mask": None, "expression": "x", "sample_id": "s1"})


# --------------------------------------------------------------------------- untrusted pickles
def shared_lists(depth: int) -> list:
    """A list whose tree, expanded, has 2**depth leaves, pickled in a few bytes per level (memo references)."""
    node: list = []
    for _ in range(depth):
        node = [node, node]
    return node


@pytest.mark.slow
def test_a_tiny_pickle_asking_for_a_huge_bytearray_is_refused_under_a_memory_cap(tmp_path):
    path = tmp_path / "refs(unc).p"
    path.write_bytes(b"\x80\x02c__builtin__\nbytearray\nJ\x00\xca\x9a;\x85R.")  # bytearray(10**9), 27 bytes
    result = run_capped(
        f"""
        from s4eca_peft.data import UnsafePickleError, load_untrusted_pickle
        try:
            load_untrusted_pickle({str(path)!r})
        except UnsafePickleError as error:
            print("refused:", error)
        """
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "refusing to unpickle bytearray(int) (a size or an iterable)" in result.stdout


def test_shared_references_expanding_to_a_huge_tree_are_refused_quickly(tmp_path):
    """Printing or converting this 2**60-leaf tree (a few hundred bytes on disk) would never finish."""
    path = tmp_path / "refs(unc).p"
    path.write_bytes(pickle.dumps([*GOOD_REFS, shared_lists(60)]))
    assert path.stat().st_size < 2000
    with pytest.raises(UnsafePickleError, match="expands to more than 1048576 objects and characters"):
        load_untrusted_pickle(path)


def test_depth_and_cycles_are_bounded(tmp_path):
    path = tmp_path / "data.p"
    path.write_bytes(pickle.dumps(_nested(60), protocol=2))
    assert load_untrusted_pickle(path) == _nested(60)
    path.write_bytes(pickle.dumps(_nested(70), protocol=2))
    with pytest.raises(UnsafePickleError, match="nest deeper than 64 levels"):
        load_untrusted_pickle(path)
    path.write_bytes(pickle.dumps(_cycle(), protocol=2))
    with pytest.raises(UnsafePickleError, match="a reference cycle"):
        load_untrusted_pickle(path)


def _nested(depth: int) -> list:
    node: list = []
    for _ in range(depth):
        node = [node]
    return node


def _cycle() -> list:
    node: list = [1]
    node.append(node)
    return node


@pytest.mark.parametrize(
    "data, message",
    [
        (b"\x80\x04\x8e" + struct.pack("<Q", 10**12) + b"abc", "bytes8, but only 3 remain"),  # BINBYTES8 of 1 TB
        (b"\x80\x02c__builtin__\nset\nJ\x00\xca\x9a;\x85R.", r"refusing to unpickle set\(int\)"),
        (b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00aX\x05\x00\x00\x00utf-7\x86R.", "_codecs.encode"),
    ],
)
def test_length_fields_and_constructor_arguments_are_checked_before_allocating(tmp_path, data, message):
    path = tmp_path / "data.p"
    path.write_bytes(data)
    with pytest.raises(ValueError, match=message):
        load_untrusted_pickle(path)


def test_an_oversized_file_is_refused_without_reading_it(tmp_path):
    path = tmp_path / "refs(unc).p"
    path.write_bytes(pickle.dumps(list(range(1000))))
    with pytest.raises(UnsafePickleError, match=r"bytes is more than the 100 bytes accepted"):
        load_untrusted_pickle(path, max_bytes=100)
