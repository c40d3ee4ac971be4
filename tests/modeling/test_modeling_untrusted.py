"""Model, tokenizer and processor folders never run their own code; expressions that are not text are refused."""

from __future__ import annotations

import builtins
import json

import pytest
from tiny_configs import tiny_vision_config
from tiny_models import tiny_tokenizer
from transformers import SwinModel

from s4eca_peft import ReferringSegmentationProcessor
from s4eca_peft.modeling.backbones import load_vision_backbone

PAYLOAD = """
open({marker!r}, "w").write("the folder's code ran")
from transformers import BertTokenizerFast, PretrainedConfig


class EvilTokenizer(BertTokenizerFast):
    pass


class EvilConfig(PretrainedConfig):
    model_type = "evil"
"""


@pytest.fixture()
def user_says_yes(monkeypatch):
    """Answers "y" to transformers' "Do you wish to run the custom code? [y/N]" prompt."""
    monkeypatch.setattr(builtins, "input", lambda *args, **kwargs: "y")


def plant_code(folder, config_name: str, changes: dict) -> str:
    marker = folder / "ran"
    (folder / "evil.py").write_text(PAYLOAD.format(marker=str(marker)))
    config = json.loads((folder / config_name).read_text())
    (folder / config_name).write_text(json.dumps({**config, **changes}))
    return marker


def test_a_processor_folder_whose_tokenizer_asks_for_its_own_code_is_refused(tmp_path, user_says_yes):
    ReferringSegmentationProcessor(tiny_tokenizer(), image_size=64).save_pretrained(tmp_path)
    auto_map = {"AutoTokenizer": ["evil.EvilTokenizer", "evil.EvilTokenizer"]}
    marker = plant_code(tmp_path, "tokenizer_config.json", {"tokenizer_class": "EvilTokenizer", "auto_map": auto_map})
    with pytest.raises(ValueError, match=r"asks to run code from its own files .* never runs such code") as error:
        ReferringSegmentationProcessor.from_pretrained(tmp_path)
    assert str(tmp_path) in str(error.value)
    assert not marker.exists()


def test_a_backbone_folder_whose_config_asks_for_its_own_code_is_refused(tmp_path, user_says_yes):
    SwinModel(tiny_vision_config("swin")).save_pretrained(tmp_path)
    marker = plant_code(tmp_path, "config.json", {"model_type": "evil", "auto_map": {"AutoConfig": "evil.EvilConfig"}})
    with pytest.raises(ValueError, match=r"asks to run code from its own files .*AutoConfig"):
        load_vision_backbone(str(tmp_path))
    assert not marker.exists()


def test_asking_to_trust_remote_code_is_refused(tmp_path):
    ReferringSegmentationProcessor(tiny_tokenizer(), image_size=64).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"`trust_remote_code=True` is refused"):
        ReferringSegmentationProcessor.from_pretrained(tmp_path, trust_remote_code=True)


@pytest.mark.parametrize(
    "text, message",
    [
        ("the car \udcff on the left", r"text\[0\]: the expression holds a lone surrogate \(U\+DCFF\) at character 8"),
        (b"the car \xff", r"text\[0\]: the expression is not UTF-8 text \(byte b'\\xff' at position 8"),
        (["a car", "\ud800"], r"text\[1\]: the expression holds a lone surrogate \(U\+D800\) at character 0"),
    ],
)
def test_expressions_that_are_not_text_raise_a_clear_value_error(text, message):
    processor = ReferringSegmentationProcessor(tiny_tokenizer(), image_size=64)
    with pytest.raises(ValueError, match=message):
        processor(text=text)


def test_utf8_bytes_are_decoded():
    processor = ReferringSegmentationProcessor(tiny_tokenizer(), image_size=64)
    from_bytes = processor(text="the white car, café".encode())["input_ids"]
    assert from_bytes.tolist() == processor(text="the white car, café")["input_ids"].tolist()
