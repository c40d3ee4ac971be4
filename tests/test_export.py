"""Adapter folders: what is saved, and refusing a base whose encoders differ from the trained ones."""

from __future__ import annotations

import json

import pytest
import torch
from peft import get_peft_model
from tiny_configs import tiny_text_config, tiny_vision_config
from transformers import BertModel, BertTokenizerFast, SwinConfig, SwinModel

from s4eca_peft import (
    ReferringSegmentationConfig,
    ReferringSegmentationModel,
    ReferringSegmentationProcessor,
    S4ECAConfig,
)
from s4eca_peft.adapter_folder import BASE_DIR, METADATA_NAME, load_for_inference, save_for_inference

TINY = S4ECAConfig(num_queries=4, text_bottleneck_size=16, text_num_heads=2, vision_bottleneck_size=8)


@pytest.fixture()
def adapter_from_folders(tmp_path, minilm_path):
    """An adapter whose base records local backbone folders (so only their names are saved, plus weights)."""
    torch.manual_seed(0)
    SwinModel(tiny_vision_config("swin")).save_pretrained(tmp_path / "swin")
    BertModel(tiny_text_config("bert"), add_pooling_layer=False).save_pretrained(tmp_path / "bert")
    base = ReferringSegmentationModel.from_backbones(str(tmp_path / "swin"), str(tmp_path / "bert"), decoder_dim=16)
    processor = ReferringSegmentationProcessor(BertTokenizerFast.from_pretrained(minilm_path), image_size=64)
    model = get_peft_model(base, TINY)
    save_for_inference(model, processor, tmp_path / "adapter")
    return tmp_path


def test_saved_layout_and_round_trip(adapter_from_folders):
    adapter = adapter_from_folders / "adapter"
    for name in ["adapter_config.json", "adapter_model.safetensors", METADATA_NAME, f"{BASE_DIR}/config.json",
                 f"{BASE_DIR}/model.safetensors", "s4eca_processor_config.json"]:
        assert (adapter / name).is_file(), name
    assert not (adapter / "README.md").exists()  # PEFT's card is not kept: ours is written by the training run
    metadata = json.loads((adapter / METADATA_NAME).read_text())
    assert metadata["image_size"] == 64
    assert metadata["backbone_architecture"]["vision_config"]["depths"] == [1, 1, 1, 1]
    model, processor, _ = load_for_inference(adapter)
    assert processor.image_size == 64 and not model.training


def test_a_deeper_backbone_is_refused(adapter_from_folders):
    adapter = adapter_from_folders / "adapter"
    deeper = SwinConfig(**{**tiny_vision_config("swin").to_dict(), "depths": [1, 1, 2, 1]})
    SwinModel(deeper).save_pretrained(adapter_from_folders / "swin")  # the recorded folder now holds a deeper Swin
    (adapter / BASE_DIR / "model.safetensors").unlink()  # rebuild from the recorded backbone folders
    config = ReferringSegmentationConfig.from_pretrained(adapter / BASE_DIR)
    assert config.vision_name_or_path == str(adapter_from_folders / "swin")
    with pytest.raises(ValueError, match=r"trained on other backbones \(vision_config: depths: trained \[1, 1, 1, 1\], found \[1, 1, 2, 1\]\)"):
        load_for_inference(adapter)


@pytest.mark.parametrize("head_reads_sentence", [True, False], ids=["sentence-head", "sentence-free-head"])
def test_the_default_base_is_recorded_by_package_reference_not_copied(tmp_path, head_reads_sentence):
    from s4eca_peft.modeling.packaged import EMBEDDED_BACKBONE, MINILM
    from s4eca_peft.training.arguments import ModelArguments
    from s4eca_peft.training.base_model import build_base_and_processor

    base, processor, notes = build_base_and_processor(
        ModelArguments(decoder_dim=16, head_reads_sentence=head_reads_sentence), image_size=64)
    assert (base.config.vision_name_or_path, base.config.text_name_or_path) == (EMBEDDED_BACKBONE, MINILM)
    assert notes[0] == f"vision backbone: {EMBEDDED_BACKBONE}"
    torch.manual_seed(0)
    model = get_peft_model(base, S4ECAConfig(num_queries=4, text_bottleneck_size=16, text_num_heads=2,
                                             vision_bottleneck_size=8))
    save_for_inference(model, processor, tmp_path / "adapter")
    assert not (tmp_path / "adapter" / BASE_DIR / "model.safetensors").exists()
    size = sum(f.stat().st_size for f in (tmp_path / "adapter").rglob("*") if f.is_file())
    assert size < 2_000_000  # adapter, head, processor and configs: no frozen encoder weights

    loaded, _, metadata = load_for_inference(tmp_path / "adapter")
    assert metadata["base_weights_included"] is False
    assert loaded.get_base_model().config.head_reads_sentence is head_reads_sentence
    inputs = processor(images=[torch.rand(3, 64, 64).numpy().transpose(1, 2, 0)], text=["the red vehicle"],
                       return_tensors="pt")
    model.eval()
    with torch.no_grad():
        expected = model(**inputs).logits
        actual = loaded(**inputs).logits
    torch.testing.assert_close(actual, expected)


def _snapshot(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


class _Killed(BaseException):
    """Stands for the process being killed."""


def _re_export(folder, **metadata):
    model, processor, _ = load_for_inference(folder)
    return lambda: save_for_inference(model, processor, folder, extra_metadata=metadata)


def test_a_new_export_replaces_the_folder_whole_and_a_kill_keeps_the_previous_one(adapter_from_folders, monkeypatch):
    from s4eca_peft import adapter_folder, files

    adapter = adapter_from_folders / "adapter"
    before = _snapshot(adapter)
    export = _re_export(adapter, best_step=7)

    def kill(*args, **kwargs):
        raise _Killed

    for where in ("exchange_paths", "write_json_atomic"):  # the swap itself; the last file of the new export
        module = files if where == "exchange_paths" else adapter_folder
        with monkeypatch.context() as patch:
            patch.setattr(module, where, kill)
            with pytest.raises(_Killed):
                export()
        assert _snapshot(adapter) == before, where
    export()
    after = _snapshot(adapter)
    assert json.loads(after[METADATA_NAME])["best_step"] == 7 and set(after) == set(before)
    assert sorted(p.name for p in adapter_from_folders.iterdir()) == ["adapter", "bert", "swin"]  # nothing left aside


def test_an_export_never_replaces_a_folder_of_other_files(adapter_from_folders):
    adapter = adapter_from_folders / "adapter"
    export = _re_export(adapter)
    (adapter / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match=r"holds files a new export would not keep \(notes\.txt\)"):
        export()
    (adapter / "notes.txt").unlink()
    (adapter / METADATA_NAME).unlink()
    with pytest.raises(ValueError, match=r"no s4eca_metadata\.json: it is not an earlier adapter export"):
        export()
    assert (adapter / "adapter_model.safetensors").is_file()


def test_a_run_folder_stands_for_its_adapter_subfolder(adapter_from_folders):
    from s4eca_peft.adapter_folder import RUN_ADAPTER_DIR, adapter_root

    run = adapter_from_folders  # holds adapter/ as a training run's folder does
    assert adapter_root(run) == run / RUN_ADAPTER_DIR == adapter_root(run / RUN_ADAPTER_DIR)
    assert adapter_root(run / "swin") == run / "swin"  # no adapter/adapter_config.json: the folder itself
    model, processor, metadata = load_for_inference(run)
    assert processor.image_size == 64 and metadata["image_size"] == 64
