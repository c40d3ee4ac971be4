"""The reference adapter: installed from a run folder by `tools/install_reference_adapter.py` (allow-list, no pickles,
no copied base, atomic), and named ``package:s4eca-peft/reference-adapter`` by every way an adapter is loaded."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tiny_models import build_tiny_adapter

from s4eca_peft.data.synthetic import generate_scene
from s4eca_peft.demo.launch import build_parser as demo_parser
from s4eca_peft.demo.launch import load_segmenter
from s4eca_peft.inference import S4ECASegmenter
from s4eca_peft.modeling import packaged
from s4eca_peft.modeling.packaged import REFERENCE_ADAPTER
from s4eca_peft.predict_command import predict_main
from s4eca_peft.training.evaluation import eval_main

REPO = Path(__file__).resolve().parents[1]
EXPRESSION = "the white tank on the left"


def load_tool():
    spec = importlib.util.spec_from_file_location("install_reference_adapter", REPO / "tools" / "install_reference_adapter.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


tool = load_tool()


def write_run_folder(folder: Path) -> Path:
    """A finished run's folder as training leaves it: a tiny adapter (base under 1 MB), its card and results, and
    what is not part of the adapter (checkpoints with pickled optimizer state, logs, pictures)."""
    build_tiny_adapter(folder, vision={"embed_dim": 8})
    (folder / "README.md").write_text("---\nlibrary_name: peft\n---\n# tiny reference\n")
    (folder / "eval_results.json").write_text(json.dumps({"val": {"split": "val", "mIoU": 0.1}}))
    (folder / "widget").mkdir()
    generate_scene(0, 32)[0].save(folder / "widget" / "scene.png")
    (folder / "checkpoints" / "checkpoint-2").mkdir(parents=True)
    (folder / "checkpoints" / "checkpoint-2" / "optimizer.bin").write_bytes(b"pickled optimizer state")
    (folder / "logs").mkdir()
    (folder / "logs" / "events.out").write_bytes(b"log")
    generate_scene(1, 32)[0].save(folder / "training_curves.png")
    return folder


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory) -> Path:
    return write_run_folder(tmp_path_factory.mktemp("run") / "run")


@pytest.fixture
def reference(run_folder, tmp_path, monkeypatch) -> Path:
    """The run installed as the reference adapter of a package whose reference folder is in ``tmp_path``."""
    target = tmp_path / "package" / "reference_adapter"
    assert tool.main([str(run_folder), "--target", str(target)]) == 0
    monkeypatch.setattr(packaged, "REFERENCE_ADAPTER_PATH", target)
    return target


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("scene") / "scene.png"
    generate_scene(1000, 64)[0].save(path)
    return path


def test_install_copies_the_allow_list_only_and_leaves_nothing_beside(reference, run_folder):
    installed = sorted(p.relative_to(reference).as_posix() for p in reference.rglob("*") if p.is_file())
    assert installed == sorted([
        "README.md", "adapter_config.json", "adapter_model.safetensors", "eval_results.json", "s4eca_base/config.json",
        "s4eca_base/model.safetensors", "s4eca_metadata.json", "s4eca_processor_config.json", "tokenizer.json",
        "tokenizer_config.json", "widget/scene.png",
    ])
    for name in installed:
        assert (reference / name).read_bytes() == (run_folder / name).read_bytes(), name
    assert tool.plan(run_folder)[1] == ["checkpoints/checkpoint-2/optimizer.bin", "logs/events.out",
                                        "training_curves.png"]  # left behind, pickles outside the adapter included
    assert sorted(p.name for p in reference.parent.iterdir()) == ["reference_adapter"]  # no staging folder left


def test_the_reference_name_loads_everywhere_an_adapter_is_loaded(reference, run_folder, scene, tmp_path, capsys):
    expected = S4ECASegmenter.from_pretrained(run_folder, device="cpu").predict(scene, EXPRESSION)
    segmenter = S4ECASegmenter.from_pretrained(REFERENCE_ADAPTER, device="cpu")
    np.testing.assert_array_equal(segmenter.predict(scene, EXPRESSION), expected)

    output = tmp_path / "mask.png"
    argv = ["--adapter", REFERENCE_ADAPTER, "--device", "cpu", "--image", str(scene), "--expression", EXPRESSION,
            "--output", str(output), "--no_overlay"]
    assert predict_main(argv) == 0
    np.testing.assert_array_equal(np.asarray(Image.open(output)), np.where(expected, 255, 0))

    scores = eval_main(["--adapter", REFERENCE_ADAPTER, "--dataset", "synthetic", "--split", "val", "--num_samples", "2"])
    assert scores["adapter"] == REFERENCE_ADAPTER and scores["num_samples"] == 2

    args = demo_parser().parse_args(["--device", "cpu"])  # s4eca-demo without --adapter: the reference
    assert args.adapter == REFERENCE_ADAPTER
    np.testing.assert_array_equal(load_segmenter(args).predict(scene, EXPRESSION), expected)
    with pytest.raises(ValueError, match="shipped with the package, not a Hub repo: revision 'v1'"):
        S4ECASegmenter.from_pretrained(REFERENCE_ADAPTER, revision="v1", device="cpu")


def test_without_an_installed_reference_the_errors_say_so(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(packaged, "REFERENCE_ADAPTER_PATH", tmp_path / "reference_adapter")
    with pytest.raises(FileNotFoundError, match=r"no reference adapter is installed .*tools/install_reference_adapter\.py"):
        S4ECASegmenter.from_pretrained(REFERENCE_ADAPTER, device="cpu")
    with pytest.raises(SystemExit) as exit_info:  # s4eca-demo needs --adapter then, as before
        demo_parser().parse_args([])
    assert exit_info.value.code == 2 and "--adapter" in capsys.readouterr().err
    with pytest.raises(ValueError, match="Unknown package reference 'package:s4eca-peft/other'"):
        S4ECASegmenter.from_pretrained("package:s4eca-peft/other", device="cpu")


@pytest.mark.parametrize("damage, message", [
    ("pickle", r"adapter_model\.bin: a pickled file in the adapter folder"),
    ("base_pickle", r"s4eca_base/weights\.pt: a pickled file"),
    ("big_base", r"model\.safetensors is 1,462,\d{3} bytes \(more than 1,000,000\): the run copied its frozen"),
    ("no_results", r"missing eval_results\.json"),
    ("link", r"tokenizer\.json: a link"),
    ("bad_weights", r"does not pass the loaders' checks: .*adapter_model\.safetensors"),
])
def test_refused_folders_install_nothing_and_keep_the_previous_reference(run_folder, tmp_path, damage, message):
    target = tmp_path / "reference_adapter"
    tool.install(run_folder, target)
    before = {p.relative_to(target): p.read_bytes() for p in target.rglob("*") if p.is_file()}
    source = write_run_folder(tmp_path / "damaged") if damage != "big_base" else build_big_base_run(tmp_path)
    if damage == "pickle":
        (source / "adapter_model.bin").write_bytes(b"\x80\x04pickle")
    elif damage == "base_pickle":
        (source / "s4eca_base" / "weights.pt").write_bytes(b"\x80\x04pickle")
    elif damage == "no_results":
        (source / "eval_results.json").unlink()
    elif damage == "link":
        (source / "tokenizer.json").unlink()
        os.symlink(run_folder / "tokenizer.json", source / "tokenizer.json")
    elif damage == "bad_weights":
        (source / "adapter_model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(tool.InstallError, match=message):
        tool.install(source, target)
    assert {p.relative_to(target): p.read_bytes() for p in target.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no staging folder left


def test_the_installed_card_names_the_reference_instead_of_the_run_folder(run_folder, tmp_path):
    from card_info import make_info
    from huggingface_hub import ModelCard

    from s4eca_peft.training.model_card import render_model_card

    run = tmp_path / "ref_run"
    shutil.copytree(run_folder, run)
    card = render_model_card(make_info(model_id="ref_run", widget_image="widget/scene.png", widget_expression="x"))
    (run / "README.md").write_text(card, encoding="utf-8")
    target, _ = tool.install(run, tmp_path / "reference_adapter")
    installed = ModelCard.load(target / "README.md")
    assert installed.data.model_name == REFERENCE_ADAPTER and installed.data.library_name == "peft"
    assert getattr(installed.data, "widget", None) is None  # no Hub repo serves its image
    assert f'S4ECASegmenter.from_pretrained("{REFERENCE_ADAPTER}")' in installed.text
    assert f"\n# {REFERENCE_ADAPTER}\n" in installed.text and "ref_run" not in installed.content
    assert (run / "README.md").read_text(encoding="utf-8") == card  # the run's own card is left as it is


def test_the_shipped_card_names_the_reference():
    card = (packaged.REFERENCE_ADAPTER_PATH / "README.md").read_text(encoding="utf-8")
    assert f'S4ECASegmenter.from_pretrained("{REFERENCE_ADAPTER}")' in card and "\nwidget:" not in card


def build_big_base_run(tmp_path: Path) -> Path:
    """A run folder whose adapter carries a copied base of about 1.5 MB."""
    folder = build_tiny_adapter(tmp_path / "big")
    (folder / "README.md").write_text("# card\n")
    (folder / "eval_results.json").write_text("{}")
    return folder


def test_a_second_install_replaces_the_first_whole(run_folder, tmp_path):
    target = tmp_path / "reference_adapter"
    tool.install(run_folder, target)
    (target / "stale.txt").write_text("from an earlier install")
    other = write_run_folder(tmp_path / "other")
    (other / "eval_results.json").write_text(json.dumps({"val": {"mIoU": 0.2}}))
    _, left = tool.install(other, target)
    assert not (target / "stale.txt").exists() and json.loads((target / "eval_results.json").read_text())["val"]["mIoU"] == 0.2
    assert "checkpoints/checkpoint-2/optimizer.bin" in left


def test_a_training_run_folder_installs_its_adapter_subfolder_with_the_runs_card_and_results(tmp_path):
    run = tmp_path / "run"
    write_run_folder(tmp_path / "flat")
    (run / "adapter").parent.mkdir()
    os.rename(tmp_path / "flat", run / "adapter")  # a run keeps its best adapter in <output_dir>/adapter/
    for name in ("README.md", "eval_results.json", "widget", "checkpoints", "logs", "training_curves.png"):
        os.rename(run / "adapter" / name, run / name)
    (run / "adapter" / "README.md").write_text("a card written into the adapter folder is not the run's card")
    target, left = tool.install(run, tmp_path / "reference_adapter")
    assert (target / "README.md").read_text() == (run / "README.md").read_text()
    assert (target / "eval_results.json").read_bytes() == (run / "eval_results.json").read_bytes()
    assert (target / "adapter_model.safetensors").read_bytes() == (run / "adapter" / "adapter_model.safetensors").read_bytes()
    assert not (target / "adapter").exists()
    assert "checkpoints/checkpoint-2/optimizer.bin" in left and "training_curves.png" in left
    S4ECASegmenter.from_pretrained(target, device="cpu")


@pytest.mark.slow
def test_the_shipped_reference_loads_offline_by_name_and_reproduces_its_val_scores():
    from s4eca_peft.data.loaders import eval_dataloader, load_split
    from s4eca_peft.training.evaluation import evaluate_loop

    assert packaged.reference_adapter_installed()
    recorded = json.loads((packaged.REFERENCE_ADAPTER_PATH / "eval_results.json").read_text())["val"]
    assert not (packaged.REFERENCE_ADAPTER_PATH / "s4eca_base" / "model.safetensors").exists()  # encoders by name
    segmenter = S4ECASegmenter.from_pretrained(REFERENCE_ADAPTER, device="cpu")
    # scored on the version 1 scenes (results without a data_version predate version 2)
    version = recorded.get("data_version", 1)
    val = load_split("synthetic", "val", image_size=128, num_samples=recorded["num_samples"], version=version)
    scores = evaluate_loop(segmenter.model, eval_dataloader(val, segmenter.processor, batch_size=32), desc="val")
    assert scores["num_samples"] == recorded["num_samples"]
    assert abs(scores["mIoU"] - recorded["mIoU"]) < 1e-4 and abs(scores["oIoU"] - recorded["oIoU"]) < 1e-4
