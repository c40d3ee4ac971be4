"""Loading and predicting with careless or hostile input: adapter folders, adapter names and output paths."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from tiny_models import build_tiny_adapter, write_image

from s4eca_peft import S4ECASegmenter
from s4eca_peft.predict_command import ERRORS_NAME, predict_main, read_batch
from s4eca_peft.tuner import AdapterFileError


@pytest.fixture(scope="module")
def adapter_dir(tmp_path_factory) -> Path:
    return build_tiny_adapter(tmp_path_factory.mktemp("untrusted_adapter") / "tiny")


def edited_copy(adapter_dir: Path, tmp_path: Path, edit) -> Path:
    folder = tmp_path / "edited"
    shutil.copytree(adapter_dir, folder)
    config_file = folder / "adapter_config.json"
    config_file.write_text(edit(config_file.read_text()))
    return folder


def _without_peft_type(text: str) -> str:
    config = json.loads(text)
    config.pop("peft_type")
    return json.dumps(config)


def _with_num_queries(text: str) -> str:
    return json.dumps(dict(json.loads(text), num_queries=7))


@pytest.mark.parametrize(
    "edit, expected",
    [
        (_without_peft_type, r"adapter_config.json: no \"peft_type\" field"),
        (lambda text: "{not json", r"adapter_config.json: not valid JSON"),
        (_with_num_queries, r"adapter_config.json does not describe these weights"),
    ],
    ids=["no-peft-type", "not-json", "edited-num-queries"],
)
def test_segmenter_reports_the_adapter_file_itself(adapter_dir, tmp_path, edit, expected):
    folder = edited_copy(adapter_dir, tmp_path, edit)
    with pytest.raises(AdapterFileError, match=expected) as caught:
        S4ECASegmenter.from_pretrained(folder, device="cpu")
    assert str(folder) in str(caught.value)
    assert "other backbones" not in str(caught.value)


def test_missing_path_like_adapter_is_not_taken_for_a_hub_repo(tmp_path, monkeypatch):
    import huggingface_hub

    def no_download(*args, **kwargs):
        raise AssertionError("a path-like adapter name was looked up on the Hub")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", no_download)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "outputs").mkdir()
    for name in ("outputs/s4eca-typo", "./s4eca", "~/adapters/s4eca"):
        with pytest.raises(FileNotFoundError, match=rf"'{name}' is not an adapter folder: no such path"):
            S4ECASegmenter.from_pretrained(name, device="cpu")
    (tmp_path / "weights.safetensors").write_bytes(b"")
    with pytest.raises(NotADirectoryError, match="'weights.safetensors' is a file"):
        S4ECASegmenter.from_pretrained("weights.safetensors", device="cpu")


# --------------------------------------------------------------------------- s4eca-predict outputs
def predict_argv(adapter_dir: Path, *extra: str) -> list[str]:
    return ["--adapter", str(adapter_dir), "--device", "cpu", *extra]


def test_single_output_over_its_input_is_refused(adapter_dir, tmp_path, capsys):
    image = write_image(tmp_path / "scene.png", 20, 30)
    before = image.read_bytes()
    (tmp_path / "alias").symlink_to(tmp_path, target_is_directory=True)
    argv = predict_argv(adapter_dir, "--image", str(image), "--expression", "the car", "--output")
    for output in (image, tmp_path / "alias" / "scene.png", tmp_path / "x" / ".." / "scene.png"):
        assert predict_main([*argv, str(output)]) == 2
        assert "would replace the input image" in capsys.readouterr().err
    assert predict_main([*argv, str(tmp_path / "scene_mask.png")]) == 0
    assert image.read_bytes() == before


def batch_file(folder: Path, rows: list[dict]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "rows.jsonl"
    path.write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    return path


@pytest.mark.parametrize(
    "rows, expected",
    [
        ([{"image": "a.png", "expression": "the car", "output": "a.png"}], r"row 1 would write .*a.png', the input image of row 1"),
        ([{"image": "a.png", "expression": "the car", "output": "m.png"},
          {"image": "b.png", "expression": "the road", "output": "m.png"}], r"rows 1 and 2 would both write .*m.png"),
        ([{"image": "a.png", "expression": "the car", "output": "b_overlay.png"},
          {"image": "b.png", "expression": "the road", "output": "b.png"}], r"rows 1 and 2 would both write .*b_overlay.png"),
        ([{"image": "b.png", "expression": "the road"},
          {"image": "a.png", "expression": "the car", "output": "b.png"}], r"row 2 would write .*b.png', the input image of row 1"),
    ],
    ids=["output-is-input", "same-output", "overlay-of-another-row", "another-rows-input"],
)
def test_batch_collisions_are_refused_before_any_work(adapter_dir, tmp_path, capsys, monkeypatch, rows, expected):
    out = tmp_path / "data"  # outputs written beside the inputs, so they can collide
    write_image(out / "a.png", 20, 30, seed=1)
    write_image(out / "b.png", 20, 30, seed=2)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    batch = batch_file(out, rows)
    monkeypatch.setattr(S4ECASegmenter, "from_pretrained", lambda *a, **k: pytest.fail("loaded before the check"))
    assert predict_main(predict_argv(adapter_dir, "--batch", str(batch), "--output_dir", str(out))) == 2
    message = capsys.readouterr().err
    assert re.search(expected, message), message
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.name != "rows.jsonl"} == before


def test_batch_output_through_a_symlink_stays_inside_output_dir(adapter_dir, tmp_path):
    data, out, outside = tmp_path / "data", tmp_path / "out", tmp_path / "outside"
    write_image(data / "a.png", 20, 30)
    out.mkdir()
    outside.mkdir()
    (out / "link").symlink_to(outside, target_is_directory=True)
    batch = batch_file(data, [{"image": "a.png", "expression": "the car", "output": "link/m.png"},
                              {"image": "a.png", "expression": "the road", "output": "fine.png"}])
    assert predict_main(predict_argv(adapter_dir, "--batch", str(batch), "--output_dir", str(out))) == 1
    errors = [json.loads(line) for line in (out / ERRORS_NAME).read_text().splitlines()]
    assert [e["row"] for e in errors] == [1] and "outside --output_dir" in errors[0]["error"]
    assert not list(outside.iterdir()) and (out / "fine.png").is_file()


def test_temporary_files_are_created_exclusively(tmp_path, monkeypatch):
    from s4eca_peft.files import write_text_atomic

    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    monkeypatch.setattr(os, "getpid", lambda: 4242)
    planted = tmp_path / "out"
    planted.mkdir()
    for name in (".tmp-4242-result.txt", ".tmp-result.txt"):
        (planted / name).symlink_to(victim)
    write_text_atomic(planted / "result.txt", "new")
    assert victim.read_text() == "keep" and (planted / "result.txt").read_text() == "new"


# --------------------------------------------------------------------------- s4eca-predict input
def test_expression_that_is_not_text_is_one_line(adapter_dir, tmp_path, capsys):
    image = write_image(tmp_path / "scene.png", 20, 30)
    argv = predict_argv(adapter_dir, "--image", str(image), "--output", str(tmp_path / "m.png"), "--expression")
    with pytest.raises(SystemExit) as exited:
        predict_main([*argv, "the car " + b"\xff".decode("utf-8", "surrogateescape")])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "--expression: the expression holds a lone surrogate" in err and "Traceback" not in err


def test_batch_rows_with_bad_text_or_quoting_are_reported_and_the_rest_continue(adapter_dir, tmp_path):
    data = tmp_path / "data"
    write_image(data / "a.png", 20, 30)
    csv_file = data / "rows.csv"
    csv_file.write_bytes(
        b"\xef\xbb\xbfimage,expression,output\n"  # a UTF-8 byte-order mark before the header
        b"a.png,the car,one.png\n"
        b"a.png,the \xff tank,two.png\n"  # not UTF-8
        b'a.png,"the ship"x,three.png\n'  # text after a closing quote
        b"a.png,the pool,four.png\n"
        b'a.png,"the road,five.png\n'  # a quote still open at the end of the file
    )
    out = tmp_path / "out_csv"
    assert predict_main(predict_argv(adapter_dir, "--batch", str(csv_file), "--output_dir", str(out))) == 1
    errors = {e["row"]: e["error"] for e in map(json.loads, (out / ERRORS_NAME).read_text().splitlines())}
    assert set(errors) == {2, 3, 5}
    assert errors[2] == f"{csv_file}: line 3: line 3 is not UTF-8 text (byte b'\\xff' at 10)"
    assert errors[3] == f"{csv_file}: line 4: malformed CSV (',' expected after '\"')"
    assert errors[5] == f"{csv_file}: line 6: malformed CSV (unexpected end of data)"
    assert (out / "one.png").is_file() and (out / "four.png").is_file()

    jsonl = data / "rows.jsonl"
    jsonl.write_bytes(b'{"image": "a.png", "expression": "the car"}\n'
                      b'{"image": "a.png", "expression": "the \\ud800 tank"}\n'  # a lone surrogate
                      b'{"image": "a.png", "expression": "the \xff road"}\n'  # not UTF-8
                      + b"[" * 100_000 + b"]" * 100_000 + b"\n"  # nested too deep for Python's parser
                      + b'{"image": "a.png", "expression": "the pool"}\n')
    out = tmp_path / "out_jsonl"
    assert predict_main(predict_argv(adapter_dir, "--batch", str(jsonl), "--output_dir", str(out))) == 1
    errors = {e["row"]: e["error"] for e in map(json.loads, (out / ERRORS_NAME).read_text().splitlines())}
    assert set(errors) == {2, 3, 4} and "lone surrogate" in errors[2] and "not UTF-8" in errors[3]
    assert errors[4] == "line 4: JSON nested deeper than MAX_JSON_DEPTH = 64 levels."
    assert len(list(out.glob("*_overlay.png"))) == 2


def test_csv_is_read_by_the_csv_module_and_a_malformed_record_is_skipped(tmp_path):
    csv_file = tmp_path / "rows.csv"
    csv_file.write_bytes(
        b"\xef\xbb\xbfimage,expression,output\r\n"  # a byte-order mark, CRLF line ends
        b'a.png,"the ship\r\nnear the ""dock""",one.png\r\n'  # lines 2-3: one row (RFC 4180)
        b"b.png,the car,two.png\n"
        b'e.png,"the boat"x,five.png\n'  # line 5: text after a closing quote, reported; line 6 is read again
        b"\n"
        b'g.png,"two\n\nparagraphs",six.png\n'  # lines 7-9: a blank line inside a quoted field is kept
        b'h.png,"never closed,seven.png\n'  # line 10: the quote takes every line after it, to the end
        b"i.png,the end,eight.png\n"
    )
    rows = {row.number: row for row in read_batch(csv_file)}
    assert sorted(rows) == [1, 3, 4, 6, 9]
    assert (rows[1].image, rows[1].expression, rows[1].output, rows[1].error) == (
        "a.png", 'the ship\nnear the "dock"', "one.png", None)
    assert (rows[3].image, rows[3].error) == ("b.png", None)
    assert rows[4].error == f"{csv_file}: line 5: malformed CSV (',' expected after '\"')"
    assert (rows[6].image, rows[6].expression, rows[6].output) == ("g.png", "two\n\nparagraphs", "six.png")
    assert rows[9].error == f"{csv_file}: lines 10-11: malformed CSV (unexpected end of data)"


def test_an_open_quote_is_given_up_at_the_csv_field_limit(tmp_path):
    csv_file = tmp_path / "rows.csv"
    limit = csv.field_size_limit()
    csv_file.write_text('image,expression\nopen.png,"never closed' + "x" * limit + "\nr.png,the next row\n")
    rows = list(read_batch(csv_file))
    assert rows[0].number == 1 and rows[0].error == (
        f"{csv_file}: line 2: malformed CSV (field larger than field limit ({limit}))")
    assert [(row.image, row.error) for row in rows[1:]] == [("r.png", None)]


@pytest.mark.parametrize("kind", ["fifo", "device", "folder"])
def test_a_batch_file_must_be_a_regular_file(tmp_path, kind):
    path = tmp_path / "rows.csv"
    {"fifo": lambda: os.mkfifo(path), "device": lambda: path.symlink_to("/dev/zero"), "folder": path.mkdir}[kind]()
    with pytest.raises(ValueError, match=f"--batch: '{path}' is not a regular file"):
        list(read_batch(path))


@pytest.mark.parametrize("flag, value", [("--tile_overlap", "1.0"), ("--tile_overlap", "-0.1"), ("--batch_size", "0"),
                                         ("--max_side", "-5"), ("--threshold", "2"), ("--tile_size", "0")])
def test_prediction_flags_out_of_range_are_usage_errors(flag, value, capsys):
    with pytest.raises(SystemExit) as exited:
        predict_main(["--adapter", "x", "--image", "a.png", "--expression", "e", "--output", "m.png", flag, value])
    assert exited.value.code == 2 and f"argument {flag}: expected" in capsys.readouterr().err


def test_many_sliding_windows_warn_and_show_progress(adapter_dir, capsys):
    segmenter = S4ECASegmenter.from_pretrained(adapter_dir, device="cpu", max_side=32, tile_size=16,
                                               tile_overlap=0.9, batch_size=64)
    image = np.zeros((48, 48, 3), dtype=np.float32)
    assert len(segmenter.window_boxes(48, 48)) > 64
    with pytest.warns(UserWarning, match=r"needs \d+ sliding windows of 16 px at overlap 0.9"):
        mask = segmenter.predict(image, "the car")
    assert mask.shape == (48, 48)
    assert "windows" in capsys.readouterr().err  # the progress bar


def test_missing_base_weights_name_the_file(adapter_dir, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(adapter_dir, folder)
    (folder / "s4eca_base" / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=r"s4eca_base/model.safetensors' is missing, and the base model"):
        S4ECASegmenter.from_pretrained(folder, device="cpu")
