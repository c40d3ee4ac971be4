"""s4eca-predict: one image, and a batch that resumes, records bad rows and writes atomically."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tiny_models import build_tiny_adapter, write_image

from s4eca_peft.predict_command import ERRORS_NAME, default_output_name, predict_main


@pytest.fixture(scope="module")
def adapter_dir(tmp_path_factory) -> Path:
    return build_tiny_adapter(tmp_path_factory.mktemp("cli_adapter") / "tiny")


def read_png(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image)


def test_one_image(adapter_dir, tmp_path):
    image = write_image(tmp_path / "scene.png", 45, 77)
    output = tmp_path / "out" / "scene_mask.png"
    argv = ["--adapter", str(adapter_dir), "--image", str(image), "--expression", "the white tank", "--output",
            str(output), "--device", "cpu", "--threshold", "0.4"]
    assert predict_main(argv) == 0
    mask = read_png(output)
    assert mask.shape == (45, 77) and mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 255}
    overlay = read_png(tmp_path / "out" / "scene_mask_overlay.png")
    assert overlay.shape == (45, 77, 3)
    assert not list((tmp_path / "out").glob("*.tmp"))


def test_usage_errors(tmp_path):
    with pytest.raises(SystemExit):
        predict_main(["--adapter", "x", "--image", "a.png"])  # no expression / output
    with pytest.raises(SystemExit):
        predict_main(["--adapter", "x", "--batch", "rows.csv"])  # no output_dir
    with pytest.raises(SystemExit):
        predict_main(["--adapter", "x", "--image", "a.png", "--expression", " ", "--output", "m.png"])


@pytest.mark.parametrize("kind", ["csv", "jsonl"])
def test_batch_with_bad_rows_resumes(adapter_dir, tmp_path, kind, monkeypatch):
    data = tmp_path / "data"
    write_image(data / "a.png", 40, 64, seed=1)
    write_image(data / "b.png", 70, 30, seed=2)
    (data / "broken.png").write_bytes(b"not a png")
    rows = [
        {"image": "a.png", "expression": "the red car"},
        {"image": "b.png", "expression": "the road", "output": "custom/b_road.png"},
        {"image": "broken.png", "expression": "the tank"},  # unreadable image
        {"image": "a.png", "expression": "  "},  # empty expression
        {"image": "missing.png", "expression": "the ship"},  # no such file
        {"image": str(data / "b.png"), "expression": "the pool"},  # absolute path
        {"image": "a.png", "expression": "the car", "output": "../escape.png"},  # outside --output_dir
    ]
    batch = data / f"rows.{kind}"
    if kind == "csv":
        lines = ["image,expression,output"] + [f"{r['image']},{r['expression']},{r.get('output', '')}" for r in rows]
        batch.write_text("\n".join(lines) + "\n")
    else:
        batch.write_text("\n".join(json.dumps(r) for r in rows) + "\n{not json\n")
    out = tmp_path / "out"
    argv = ["--adapter", str(adapter_dir), "--batch", str(batch), "--output_dir", str(out), "--device", "cpu"]

    assert predict_main(argv) == 1  # some rows failed; the others were written
    first = out / default_output_name("a.png", "the red car")
    written = [first, out / "custom" / "b_road.png", out / default_output_name(str(data / "b.png"), "the pool")]
    for path, shape in zip(written, [(40, 64), (70, 30), (70, 30)]):
        assert read_png(path).shape == shape
        assert read_png(path.with_name(f"{path.stem}_overlay.png")).shape == (*shape, 3)
    errors = [json.loads(line) for line in (out / ERRORS_NAME).read_text().splitlines()]
    reasons = {error["row"]: error["error"] for error in errors}
    assert "cannot read image file" in reasons[3] and "broken.png" in reasons[3]
    assert "expression is empty" in reasons[4]
    assert "no image file" in reasons[5] and "missing.png" in reasons[5]
    assert "outside --output_dir" in reasons[7] and not (tmp_path / "escape.png").exists()
    if kind == "jsonl":
        assert "not valid JSON" in reasons[8]
    assert len(errors) == (5 if kind == "jsonl" else 4)
    assert not list(out.rglob("*.tmp"))

    # a second run skips the rows already written and predicts nothing again
    first.unlink()  # ... except this one, removed as if the first run had been interrupted before it
    calls = []
    from s4eca_peft.inference import S4ECASegmenter

    original = S4ECASegmenter.predict
    monkeypatch.setattr(S4ECASegmenter, "predict", lambda self, *a, **k: calls.append(a[1]) or original(self, *a, **k))
    assert predict_main(argv) == 1
    assert calls == ["the red car"]  # one predict call, for the one row left
    assert first.is_file()
    records = [json.loads(line) for line in (out / ERRORS_NAME).read_text().splitlines()]
    assert records[: len(errors)] == errors and len(records) == 2 * len(errors)  # appended, never truncated
    assert len({record["run"] for record in records[len(errors):]} | {errors[0]["run"]}) == 2  # under a new run id


def test_bad_batch_file_adapter_or_image(adapter_dir, tmp_path, capsys):
    batch = tmp_path / "rows.csv"
    batch.write_text("path,text\na.png,the car\n")
    assert predict_main(["--adapter", "/nonexistent", "--batch", str(batch), "--output_dir", str(tmp_path)]) == 2
    assert "columns image and expression" in capsys.readouterr().err  # checked before the adapter is loaded

    image = write_image(tmp_path / "scene.png", 20, 30)
    argv = ["--image", str(image), "--expression", "the car", "--output", str(tmp_path / "m.png"), "--device", "cpu"]
    assert predict_main(["--adapter", str(tmp_path / "no_adapter"), *argv]) == 2
    assert "is not an adapter folder" in capsys.readouterr().err

    argv[1] = str(tmp_path / "missing.png")
    assert predict_main(["--adapter", str(adapter_dir), *argv]) == 2
    assert "no image file" in capsys.readouterr().err
