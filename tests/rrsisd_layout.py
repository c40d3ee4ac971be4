"""A small RRSIS-D folder (refs(unc).p, instances.json, JPEGImages) with known masks, shared by the data tests."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

H, W = 40, 50


def l_shape() -> np.ndarray:
    mask = np.zeros((H, W), bool)
    mask[2:10, 3:6] = True
    mask[8:10, 3:15] = True
    return mask


def dotted() -> np.ndarray:
    mask = np.zeros((H, W), bool)
    mask[::3, ::4] = True
    return mask


def polygon_rectangle() -> np.ndarray:
    mask = np.zeros((H, W), bool)
    mask[5:20, 10:30] = True  # pycocotools fills [x0, x1) x [y0, y1) for an axis-aligned integer rectangle
    return mask


def second_airplane() -> np.ndarray:
    """Another airplane in image 1 that no ref names (it shares the category of ref 1's target)."""
    mask = np.zeros((H, W), bool)
    mask[25:35, 35:45] = True
    return mask


def uncompressed_rle(mask: np.ndarray) -> dict:
    """COCO uncompressed RLE written by hand: column-major runs, starting with a run of zeros."""
    flat = mask.flatten(order="F").astype(int)
    counts, current, run = [], 0, 0
    for value in flat:
        if value != current:
            counts.append(run)
            current, run = value, 0
        run += 1
    counts.append(run)
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": counts}


def compressed_rle(mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def sentence(text: str, sent_id: int) -> dict:
    return {"raw": text, "sent": text.lower().strip(), "tokens": text.lower().split(), "sent_id": sent_id}


def ref(ref_id, ann_id, image_id, split, sentences, category_id=1) -> dict:
    return {
        "ref_id": ref_id,
        "ann_id": ann_id,
        "image_id": image_id,
        "split": split,
        "category_id": category_id,
        "sentences": sentences,
    }

GOOD_REFS = [
    ref(1, 11, 1, "train", [sentence("The airplane on the LEFT", 100), sentence("  white   plane ", 101)]),
    ref(2, 12, 2, "train", [sentence("the L shaped building", 102)], category_id=2),
    ref(3, 13, 3, "val", [sentence("dotted field", 103)]),
    ref(4, 14, 1, "test", [sentence("the same image, another object", 104)], category_id=2),
]

GOOD_ANNOTATIONS = [
    {"id": 11, "image_id": 1, "category_id": 1, "segmentation": [[10, 5, 30, 5, 30, 20, 10, 20]]},
    {"id": 12, "image_id": 2, "category_id": 2, "segmentation": uncompressed_rle(l_shape())},
    {"id": 13, "image_id": 3, "category_id": 1, "segmentation": compressed_rle(dotted())},
    {"id": 14, "image_id": 1, "category_id": 2, "segmentation": compressed_rle(l_shape())},
    {"id": 15, "image_id": 1, "category_id": 1, "segmentation": compressed_rle(second_airplane())},
]


def image_record(image_id: int, file_name: str, height: int = H, width: int = W) -> dict:
    return {"id": image_id, "file_name": file_name, "height": height, "width": width}


def write_rrsisd(root: Path, refs: list, annotations: list, images: list, files: dict) -> Path:
    (root / "rrsisd").mkdir(parents=True)
    image_dir = root / "images" / "rrsisd" / "JPEGImages"
    image_dir.mkdir(parents=True)
    with open(root / "rrsisd" / "refs(unc).p", "wb") as handle:
        pickle.dump(refs, handle)
    categories = [{"id": 1, "name": "airplane"}, {"id": 2, "name": "building"}]
    instances = {"images": images, "annotations": annotations, "categories": categories}
    (root / "rrsisd" / "instances.json").write_text(json.dumps(instances))
    for name, content in files.items():
        if isinstance(content, bytes):
            (image_dir / name).write_bytes(content)
        else:
            Image.new("RGB", content, (90, 120, 60)).save(image_dir / name, format="JPEG")
    return root


def good_layout(root: Path, refs=(), annotations=(), images=(), files=None) -> Path:
    images = [image_record(i, f"{i:05d}.jpg") for i in (1, 2, 3)] + list(images)
    files = {f"{i:05d}.jpg": (W, H) for i in (1, 2, 3)} | dict(files or {})
    return write_rrsisd(root, GOOD_REFS + list(refs), GOOD_ANNOTATIONS + list(annotations), images, files)
