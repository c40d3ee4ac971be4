"""Loading and predicting with careless or hostile input: adapter folders, adapter names and output paths."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from test_inference import build_tiny_adapter
from test_inference_cli import write_image

from s4eca_peft import S4ECASegmenter
from s4eca_peft.predict_command import ERRORS_NAME, MAX_RECORD_LINES, predict_main, read_batch
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
        b'a.png,"the road,two.png\n'  # unterminated quote: must not swallow the next row
        b"a.png,the pool,three.png\n"
        b"a.png,the \xff tank,four.png\n"  # not UTF-8
        b'a.png,"the ship"x,five.png\n'  # text after a closing quote
    )
    out = tmp_path / "out_csv"
    assert predict_main(predict_argv(adapter_dir, "--batch", str(csv_file), "--output_dir", str(out))) == 1
    errors = {e["row"]: e["error"] for e in map(json.loads, (out / ERRORS_NAME).read_text().splitlines())}
    assert set(errors) == {2, 4, 5}
    assert "malformed CSV quoting" in errors[2] and "not UTF-8" in errors[4] and "malformed CSV quoting" in errors[5]
    assert errors[2].startswith(f"{csv_file}: line 3: ") and "still open at line 5, which is not UTF-8" in errors[2]
    assert (out / "one.png").is_file() and (out / "three.png").is_file()

    jsonl = data / "rows.jsonl"
    jsonl.write_bytes(b'{"image": "a.png", "expression": "the car"}\n'
                      b'{"image": "a.png", "expression": "the \\ud800 tank"}\n'  # a lone surrogate
                      b'{"image": "a.png", "expression": "the \xff road"}\n'  # not UTF-8
                      b'{"image": "a.png", "expression": "the pool"}\n')
    out = tmp_path / "out_jsonl"
    assert predict_main(predict_argv(adapter_dir, "--batch", str(jsonl), "--output_dir", str(out))) == 1
    errors = {e["row"]: e["error"] for e in map(json.loads, (out / ERRORS_NAME).read_text().splitlines())}
    assert set(errors) == {2, 3} and "lone surrogate" in errors[2] and "not UTF-8" in errors[3]
    assert len(list(out.glob("*_overlay.png"))) == 2


def test_csv_quoted_fields_may_span_lines_and_an_open_quote_swallows_no_row(tmp_path):
    csv_file = tmp_path / "rows.csv"
    csv_file.write_bytes(
        b"\xef\xbb\xbfimage,expression,output\r\n"  # a byte-order mark, CRLF line ends
        b'a.png,"the ship\r\nnear the ""dock""",one.png\r\n'  # lines 2-3: one row (RFC 4180)
        b"b.png,the car,two.png\n"
        b'c.png,"the road,three.png\n'  # line 5: its quote is closed on line 7, then text follows the closing quote
        b"d.png,the pool,four.png\n"
        b'e.png,"the boat"x,five.png\n'
        b"\n"
        b'g.png,"two\n\nparagraphs",six.png\n'  # lines 9-11: a blank line inside a quoted field is kept
        b'h.png,"never closed,seven.png\n'  # line 12: a quote still open at the end of the file
        b"i.png,the end,eight.png\n"
    )
    rows = {row.number: row for row in read_batch(csv_file)}
    assert sorted(rows) == [1, 3, 4, 5, 6, 8, 11, 12]
    assert (rows[1].image, rows[1].expression, rows[1].output, rows[1].error) == (
        "a.png", 'the ship\nnear the "dock"', "one.png", None)
    assert (rows[3].image, rows[3].error) == ("b.png", None)
    assert rows[4].error == f"{csv_file}: lines 5-7: malformed CSV quoting (',' expected after '\"')"
    assert (rows[5].image, rows[5].expression, rows[5].output, rows[5].error) == ("d.png", "the pool", "four.png", None)
    assert rows[6].error == f"{csv_file}: line 7: malformed CSV quoting (',' expected after '\"')"
    assert (rows[8].image, rows[8].expression, rows[8].output) == ("g.png", "two\n\nparagraphs", "six.png")
    assert rows[11].error == (
        f"{csv_file}: line 12: malformed CSV quoting (a quote opened here is still open at the end of the file)")
    assert (rows[12].image, rows[12].expression, rows[12].error) == ("i.png", "the end", None)


def test_an_open_quote_is_given_up_after_max_record_lines(tmp_path):
    csv_file = tmp_path / "rows.csv"
    body = "".join(f"r{i}.png,row {i}\n" for i in range(MAX_RECORD_LINES + 20))
    csv_file.write_text('image,expression\nopen.png,"never closed\n' + body)
    rows = list(read_batch(csv_file))
    assert rows[0].number == 1 and rows[0].error == (
        f"{csv_file}: line 2: malformed CSV quoting (a quote opened here is still open at {MAX_RECORD_LINES} lines)")
    assert [row.image for row in rows[1:]] == [f"r{i}.png" for i in range(MAX_RECORD_LINES + 20)]
    assert all(row.error is None for row in rows[1:])


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
