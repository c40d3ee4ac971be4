"""Hostile and careless input to ``s4eca-predict``, one table: a fixture builds each input, and each case ends in one
clear line with exit status 2, or in a reported skip (exit status 1, the reason in ``errors.jsonl``). Whatever the
case, nothing outside the output folder changes and no input is replaced."""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from PIL import Image
from tiny_models import build_tiny_adapter, write_image

from s4eca_peft.predict_command import ERRORS_NAME, predict_main


@pytest.fixture(scope="module")
def adapter_dir(tmp_path_factory) -> Path:
    return build_tiny_adapter(tmp_path_factory.mktemp("hostile_adapter") / "tiny")


@dataclass
class Case:
    """``build(work, adapter)`` makes the input under ``work`` and returns the arguments (``--adapter`` is added
    unless given); ``status`` 2 expects ``expected`` in the one line on stderr, 1 in ``errors.jsonl``."""

    build: Callable[[Path, Path], list[str]]
    status: int
    expected: str


def one_image(work: Path, adapter: Path, *extra: str, output: str = "out/m.png") -> list[str]:
    image = write_image(work / "in" / "scene.png", 20, 30)
    (work / "out").mkdir(exist_ok=True)
    return ["--adapter", str(adapter), "--image", str(image), "--expression", "the car", "--output",
            str(work / output), "--device", "cpu", *extra]


def batch(work: Path, adapter: Path, rows: list[dict] | bytes, *extra: str, name: str = "rows.jsonl") -> list[str]:
    write_image(work / "in" / "a.png", 20, 30)
    file = work / "in" / name
    file.write_bytes(rows if isinstance(rows, bytes) else "".join(json.dumps(r) + "\n" for r in rows).encode())
    (work / "out").mkdir(exist_ok=True)
    return ["--adapter", str(adapter), "--batch", str(file), "--output_dir", str(work / "out"), "--device", "cpu",
            *extra]


def fifo_output(work: Path, adapter: Path) -> list[str]:
    argv = one_image(work, adapter)
    os.mkfifo(work / "out" / "m.png")
    return argv


def linked_output(work: Path, adapter: Path) -> list[str]:
    argv = one_image(work, adapter)
    (work / "in" / "victim.png").write_bytes(b"keep")
    (work / "out" / "m.png").symlink_to(work / "in" / "victim.png")
    return argv


def big_png(work: Path) -> Path:
    path = work / "in" / "big.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("1", (12000, 12000)).save(path)
    return path


def fifo_batch(work: Path, adapter: Path) -> list[str]:
    argv = batch(work, adapter, [])
    (work / "in" / "rows.jsonl").unlink()
    os.mkfifo(work / "in" / "rows.jsonl")
    return argv


def device_batch(work: Path, adapter: Path) -> list[str]:
    argv = batch(work, adapter, [])
    (work / "in" / "rows.jsonl").unlink()
    (work / "in" / "rows.jsonl").symlink_to("/dev/zero")
    return argv


def vector_through_link(work: Path, adapter: Path) -> list[str]:
    pytest.importorskip("rasterio")
    argv = batch(work, adapter, [{"image": "a.png", "expression": "the car", "vector": "link/v.geojson"}])
    (work / "elsewhere").mkdir()
    (work / "out" / "link").symlink_to(work / "elsewhere", target_is_directory=True)
    return argv


def edited(name: str, edit: Callable[[object], object]) -> Callable[[Path, Path], list[str]]:
    """An adapter copy whose ``name`` (JSON) is replaced by ``edit(content)``; a str or bytes result is written as is."""

    def build(work: Path, adapter: Path) -> list[str]:
        folder = work / "adapter"
        shutil.copytree(adapter, folder)
        file = folder / name
        content = edit(json.loads(file.read_text()) if file.is_file() else None)
        file.write_bytes(content if isinstance(content, bytes) else json.dumps(content).encode())
        return one_image(work, folder)

    return build


DEEP = b"[" * 100_000 + b"]" * 100_000
PROCESSOR, BASE, METADATA = "s4eca_processor_config.json", "s4eca_base/config.json", "s4eca_metadata.json"


def with_field(field: str, value: object) -> Callable[[object], object]:
    return lambda data: dict(data, **{field: value})


def with_sub_field(side: str, field: str, value: object) -> Callable[[object], object]:
    return lambda data: dict(data, **{side: dict(data[side], **{field: value})})


CASES = {
    # one writer
    "output is a FIFO": Case(fifo_output, 2, "is not a regular file"),
    "output is a link": Case(linked_output, 2, "is not a regular file"),
    "output is a .jpg": Case(lambda w, a: one_image(w, a, output="out/m.jpg"), 2, "masks are written as .png"),
    "two rows write one vector": Case(lambda w, a: (pytest.importorskip("rasterio"), batch(w, a, [
        {"image": "a.png", "expression": "the car", "output": "one.tif", "vector": "v.geojson"},
        {"image": "a.png", "expression": "the road", "output": "two.tif", "vector": "v.geojson"}]))[1],
        2, "rows 1 and 2 would both write"),
    "a row writes its input image": Case(lambda w, a: batch(w, a, [
        {"image": "a.png", "expression": "the car", "output": "a.png"}], "--output_dir", str(w / "in")),
        2, "the input image of row 1"),
    "a vector through a link leaves --output_dir": Case(vector_through_link, 1, "outside --output_dir"),
    # memory budget
    "image above --max_pixels": Case(lambda w, a: one_image(w, a, "--max_pixels", "100"), 2,
                                     "30 x 20 = 600 pixels is more than the limit of 100 (raise it with --max_pixels"),
    "a 12000 x 12000 PNG": Case(lambda w, a: one_image(w, a, "--image", str(big_png(w))), 2,
                                          "12000 x 12000 = 144000000 pixels is more than the limit of 67108864"),
    "batch file is a FIFO": Case(fifo_batch, 2, "is not a regular file"),
    "batch file is /dev/zero": Case(device_batch, 2, "is not a regular file"),
    "a JSONL row nested 100k deep": Case(lambda w, a: batch(w, a, DEEP + b"\n"), 1, "JSON nested deeper than"),
    # device flags
    "--device tpu9": Case(lambda w, a: one_image(w, a, "--device", "tpu9"), 2, "unknown device 'tpu9'"),
    # one schema for the adapter folder
    "processor image_size 30000": Case(edited(PROCESSOR, with_field("image_size", 30000)), 2,
                                       f"{PROCESSOR}: `image_size` must be a finite int in [16, 4096], got 30000"),
    "processor max_length 100000": Case(edited(PROCESSOR, with_field("max_length", 100000)), 2,
                                        "`max_length` must be a finite int in [1, 4096], got 100000"),
    "processor image_std zeros": Case(edited(PROCESSOR, with_field("image_std", [0, 0, 0])), 2,
                                      "`image_std[0]` must be a finite number in [1e-06, 10], got 0"),
    "processor image_size a string": Case(edited(PROCESSOR, with_field("image_size", "big")), 2,
                                          "`image_size` must be an int, got a str"),
    "processor config a list": Case(edited(PROCESSOR, lambda data: [data]), 2,
                                    f"{PROCESSOR}: must be a JSON object, got a list"),
    "base decoder_dim 200000": Case(edited(BASE, with_field("decoder_dim", 200000)), 2,
                                    "`decoder_dim` must be a finite int in [1, 16384], got 200000"),
    "base decoder_dim 'wide'": Case(edited(BASE, with_field("decoder_dim", "wide")), 2,
                                    "`decoder_dim` must be an int, got a str"),
    "base head_rank_product 'yes'": Case(edited(BASE, with_field("head_rank_product", "yes")), 2,
                                         "`head_rank_product` must be a bool, got a str"),
    "base hidden_size 10**6": Case(edited(BASE, with_sub_field("text_config", "hidden_size", 10**6)), 2,
                                   "`text_config.hidden_size` must be a finite int in [1, 16384]"),
    "metadata a list": Case(edited(METADATA, lambda data: [data]), 2, f"{METADATA}: must be a JSON object"),
    "metadata nested 100k deep": Case(edited(METADATA, lambda data: DEEP), 2,
                                      f"{METADATA}: JSON nested deeper than MAX_JSON_DEPTH = 64"),
    "metadata backbone_architecture 5": Case(edited(METADATA, with_field("backbone_architecture", 5)), 2,
                                             "`backbone_architecture` must be an object, got 5"),
    "adapter_config nested 100k deep": Case(edited("adapter_config.json", lambda data: DEEP), 2,
                                            "adapter_config.json: JSON nested deeper than MAX_JSON_DEPTH = 64"),
    "tokenizer.json without a model": Case(edited("tokenizer.json", lambda data: {"version": "1.0"}), 2,
                                           "the tokenizer files cannot be loaded"),
}
if not torch.cuda.is_available():
    CASES["--device cuda without a GPU"] = Case(lambda w, a: one_image(w, a, "--device", "cuda"), 2,
                                                "this machine has 0 cuda device(s)")


def snapshot(root: Path, skip: Path) -> dict[str, tuple[int, bytes | str]]:
    """Every path under ``root`` but ``skip``: its type, and a regular file's bytes or a link's target."""
    found = {}
    for path in sorted(root.rglob("*")):
        if path == skip or skip in path.parents:
            continue
        mode = path.lstat().st_mode
        found[str(path)] = (stat.S_IFMT(mode), path.read_bytes() if stat.S_ISREG(mode) else
                            os.readlink(path) if stat.S_ISLNK(mode) else "")
    return found


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_hostile_input_ends_in_one_line_or_a_reported_skip(adapter_dir, tmp_path, capsys, case):
    argv = case.build(tmp_path, adapter_dir)
    out = tmp_path / "out"
    before = snapshot(tmp_path, out)
    status = predict_main(argv)
    err = capsys.readouterr().err
    assert status == case.status
    if case.status == 2:
        lines = [line for line in err.splitlines() if line.startswith("s4eca-predict: error:")]
        assert len(lines) == 1 and case.expected in lines[0] and "Traceback" not in err, err
    else:
        assert case.expected in json.loads((out / ERRORS_NAME).read_text().splitlines()[0])["error"]
    assert snapshot(tmp_path, out) == before  # nothing outside the output folder changed, no input replaced


def test_outputs_follow_the_umask_and_no_temporary_is_left(adapter_dir, tmp_path):
    name = "m" * 242 + ".png"  # 246 characters; the overlay's name has 254
    argv = one_image(tmp_path, adapter_dir, output=f"out/{name}")
    old = os.umask(0o022)
    try:
        assert predict_main(argv) == 0
    finally:
        os.umask(old)
    written = sorted((tmp_path / "out").iterdir())
    assert [p.name for p in written] == [name, "m" * 242 + "_overlay.png"]
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o644 for p in written)


def test_a_full_disk_while_writing_an_output_is_one_line_and_leaves_nothing(adapter_dir, tmp_path, capsys,
                                                                          monkeypatch):
    def full(self, fp, *args, **kwargs):
        Path(fp).write_bytes(b"part")
        raise OSError(errno.ENOSPC, "No space left on device")

    argv = one_image(tmp_path, adapter_dir)
    monkeypatch.setattr(Image.Image, "save", full)
    assert predict_main(argv) == 2
    line = capsys.readouterr().err.strip()
    assert line == f"s4eca-predict: error: cannot write '{tmp_path / 'out' / 'm.png'}': No space left on device"
    assert not list((tmp_path / "out").iterdir())


FULL_DISK_SCRIPT = """
import resource, signal, sys
from pathlib import Path
import numpy as np, rasterio
from rasterio.transform import from_origin
from s4eca_peft.geo import predict_raster

with rasterio.open("scene.tif", "w", driver="GTiff", width=1200, height=1200, count=3, dtype="uint8",
                   crs="EPSG:32633", transform=from_origin(500000, 4000000, 1, 1)) as scene:
    scene.write(np.random.default_rng(0).integers(0, 255, (3, 1200, 1200), dtype=np.uint8))
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (50_000, 50_000))  # files stop growing past 50 kB, as on a full disk
noise = lambda windows: [np.random.default_rng(1).random(w.shape[:2]).astype(np.float32) for w in windows]
try:
    predict_raster(noise, "scene.tif", "the car", Path("out/m.tif"), vector=Path("out/v.geojson"))
except OSError as error:
    sys.exit(str(error))
"""


@pytest.mark.slow  # a fresh interpreter imports torch and transformers
def test_a_full_disk_on_the_geotiff_path_names_the_output_and_leaves_nothing(tmp_path):
    pytest.importorskip("rasterio")
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", FULL_DISK_SCRIPT], cwd=tmp_path, capture_output=True, text=True,
                            env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)), timeout=300)
    assert result.returncode == 1 and result.stderr.splitlines()[-1].startswith("cannot write 'out/m.tif': ")
    assert os.listdir(tmp_path / "out") == []


def test_links_planted_where_temporaries_once_were_are_never_followed_and_many_windows_warn(tmp_path):
    pytest.importorskip("rasterio")
    import rasterio
    from rasterio.transform import from_origin

    from s4eca_peft.geo import predict_raster

    scene = tmp_path / "scene.tif"
    with rasterio.open(scene, "w", driver="GTiff", width=64, height=48, count=3, dtype="uint8", crs="EPSG:32633",
                       transform=from_origin(500000, 4000000, 1, 1)) as sink:
        sink.write(torch.randint(0, 255, (3, 48, 64), dtype=torch.uint8).numpy())
    out, victims = tmp_path / "out", tmp_path / "victims"
    out.mkdir()
    victims.mkdir()
    for name in (f".m.{os.getpid()}.mask.tif", f".m.{os.getpid()}.tmp.tif", f".v.{os.getpid()}.tmp.geojson",
                 ".tmp-m.tif", ".tmp-v.geojson"):
        (victims / name).write_bytes(b"keep")
        (out / name).symlink_to(victims / name)
    probabilities = lambda windows: [torch.rand(w.shape[:2]).numpy() for w in windows]  # noqa: E731
    with pytest.warns(UserWarning, match=r"A 48 x 64 raster needs 165 windows of 8 x 8 px; progress is shown"):
        predict_raster(probabilities, scene, "the car", out / "m.tif", vector=out / "v.geojson", max_side=8,
                       tile_size=8, tile_overlap=0.5, batch_size=64)  # many windows: a warning and progress
    assert all(path.read_bytes() == b"keep" for path in victims.iterdir())
    assert all(not (out / name).is_symlink() and (out / name).is_file() for name in ("m.tif", "v.geojson"))


def test_relative_backbone_paths_are_read_from_the_adapter_folder(tmp_path, monkeypatch):
    from s4eca_peft.adapter_schema import resolve_backbone

    adapter = tmp_path / "adapter"
    (adapter / "swin").mkdir(parents=True)
    (tmp_path / "cwd" / "swin").mkdir(parents=True)  # the same name in the working directory is never read
    (tmp_path / "cwd" / "owner").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    assert resolve_backbone(adapter, "swin") == str(adapter / "swin")
    assert resolve_backbone(adapter, "../bert") == str(adapter / "../bert")
    assert resolve_backbone(adapter, "owner/model") == "owner/model"  # spelled like a Hub id, absent in the folder
    assert resolve_backbone(adapter, str(tmp_path / "cwd" / "swin")) == str(tmp_path / "cwd" / "swin")
    assert resolve_backbone(adapter, "package:s4eca-peft/swin") == "package:s4eca-peft/swin"


def test_sigterm_during_a_geotiff_prediction_leaves_no_scratch_file(adapter_dir, tmp_path, monkeypatch):
    pytest.importorskip("rasterio")
    import signal

    import rasterio
    from rasterio.transform import from_origin

    from s4eca_peft.geo import prediction

    scene = tmp_path / "scene.tif"
    with rasterio.open(scene, "w", driver="GTiff", width=64, height=48, count=3, dtype="uint8", crs="EPSG:32633",
                       transform=from_origin(500000, 4000000, 1, 1)) as sink:
        sink.write(torch.randint(0, 255, (3, 48, 64), dtype=torch.uint8).numpy())

    def stopped(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("SIGTERM did not stop the prediction")

    monkeypatch.setattr(prediction, "_write_cells", stopped)
    previous = signal.getsignal(signal.SIGTERM)
    try:
        with pytest.raises(SystemExit) as exited:
            predict_main(["--adapter", str(adapter_dir), "--image", str(scene), "--expression", "the car",
                          "--output", str(tmp_path / "out" / "m.tif"), "--device", "cpu"])
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert exited.value.code == 128 + signal.SIGTERM and os.listdir(tmp_path / "out") == []


def test_eval_output_that_is_a_fifo_is_refused_before_any_work(tmp_path, capsys):
    from s4eca_peft.cli import eval_main

    os.mkfifo(tmp_path / "results.json")
    with pytest.raises(SystemExit) as exited:
        eval_main(["--adapter", str(tmp_path / "no_adapter"), "--output", str(tmp_path / "results.json")])
    assert exited.value.code == 2
    assert f"cannot write '{tmp_path / 'results.json'}': it exists and is not a regular file" in capsys.readouterr().err
    assert stat.S_ISFIFO((tmp_path / "results.json").lstat().st_mode)
