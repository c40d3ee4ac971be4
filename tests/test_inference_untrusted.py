"""Loading and predicting with careless or hostile input: adapter folders, adapter names and output paths."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from test_inference import build_tiny_adapter

from s4eca_peft import S4ECASegmenter
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
        with pytest.raises(FileNotFoundError, match=rf"Adapter folder '{name}' does not exist"):
            S4ECASegmenter.from_pretrained(name, device="cpu")
    (tmp_path / "weights.safetensors").write_bytes(b"")
    with pytest.raises(NotADirectoryError, match="'weights.safetensors' is a file"):
        S4ECASegmenter.from_pretrained("weights.safetensors", device="cpu")
