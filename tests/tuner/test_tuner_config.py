"""S4ECAConfig: documentation of every field, validation, and registration with peft."""

from __future__ import annotations

import dataclasses
import json

import pytest
from peft import PeftConfig
from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING, PEFT_TYPE_TO_PREFIX_MAPPING, PEFT_TYPE_TO_TUNER_MAPPING

import s4eca_peft
from s4eca_peft.tuner import S4ECAConfig, S4ECAModel, S4ECAPeftType

BASE_FIELDS = {f.name for f in dataclasses.fields(PeftConfig)}
OWN_FIELDS = [f for f in dataclasses.fields(S4ECAConfig) if f.name not in BASE_FIELDS]


@pytest.mark.parametrize("field", OWN_FIELDS, ids=lambda f: f.name)
def test_every_field_is_documented_twice(field):
    assert field.metadata.get("help"), f"{field.name} has no help metadata"
    assert f"        {field.name} (`" in S4ECAConfig.__doc__, f"{field.name} is missing from the Args: block"


def test_defaults():
    config = S4ECAConfig()
    assert config.peft_type == "S4ECA" and config.peft_type is S4ECAPeftType.S4ECA
    assert (config.text_target_modules, config.vision_target_modules, config.modules_to_save) == (None, None, None)
    assert (config.num_queries, config.text_bottleneck_size, config.vision_bottleneck_size) == (16, 128, 82)
    assert (config.extractor_kernel_sizes, config.extractor_dilations) == ([3, 3, 3], [1, 2, 3])
    assert config.scale_selection and config.spatial_selection and config.init_weights
    assert config.target_modules is None  # two kinds of targets instead


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_queries": 0}, "num_queries"),
        ({"num_queries": 2.5}, "num_queries"),
        ({"text_bottleneck_size": 0}, "text_bottleneck_size"),
        ({"vision_bottleneck_size": -4}, "vision_bottleneck_size"),
        ({"text_num_heads": 3}, "must divide"),
        ({"text_hidden_size": 0}, "text_hidden_size"),
        ({"extractor_dilations": [1, 2]}, "same length"),
        ({"extractor_kernel_sizes": [], "extractor_dilations": []}, "non-empty"),
        ({"extractor_kernel_sizes": [3, 4, 3]}, "odd"),
        ({"extractor_dilations": [1, 0, 3]}, "extractor_dilations"),
        ({"scale_selection": "yes"}, "switch"),
        ({"spatial_selection": 1}, "switch"),
        ({"vision_target_modules": 3}, "vision_target_modules"),
        ({"modules_to_save": "segmentation_head"}, "full dotted"),
    ],
)
def test_out_of_range_values_raise_naming_the_fix(kwargs, message):
    with pytest.raises(ValueError, match=message) as error:
        S4ECAConfig(**kwargs)
    assert "e.g." in str(error.value) or "set it" in str(error.value) or "must" in str(error.value)


def test_registered_with_peft():
    assert PEFT_TYPE_TO_CONFIG_MAPPING["S4ECA"] is S4ECAConfig
    assert PEFT_TYPE_TO_TUNER_MAPPING["S4ECA"] is S4ECAModel
    assert PEFT_TYPE_TO_PREFIX_MAPPING["S4ECA"] == "s4eca_"
    s4eca_peft.tuner.register_s4eca()  # idempotent
    assert PEFT_TYPE_TO_CONFIG_MAPPING["S4ECA"] is S4ECAConfig


def test_config_round_trip_through_peft_config(tmp_path):
    config = S4ECAConfig(vision_target_modules=r".*\.blocks\.\d+", num_queries=3, extractor_dilations=[1, 3, 5])
    config.save_pretrained(tmp_path)
    stored = json.loads((tmp_path / "adapter_config.json").read_text())
    assert stored["peft_type"] == "S4ECA" and stored["extractor_dilations"] == [1, 3, 5]
    loaded = PeftConfig.from_pretrained(tmp_path)
    assert isinstance(loaded, S4ECAConfig) and loaded.to_dict() == config.to_dict()
