"""Broken or edited adapter files: each error names the file and the real cause, before anything is allocated."""

from __future__ import annotations

import copy
import json

import pytest
from memory_cap import run_capped
from peft import PeftModel, get_peft_model
from safetensors.torch import load_file, save_file
from tiny_models import TINY, build

from s4eca_peft import S4ECAConfig
from s4eca_peft.tuner import AdapterFileError, check_adapter_folder


@pytest.fixture(scope="module")
def swin_bert():
    return build()


@pytest.fixture()
def adapter(tmp_path, swin_bert):
    get_peft_model(copy.deepcopy(swin_bert), S4ECAConfig(**TINY, init_weights=False)).save_pretrained(tmp_path)
    return tmp_path


def edit_config(folder, **changes) -> None:
    path = folder / "adapter_config.json"
    data = json.loads(path.read_text())
    for key, value in changes.items():
        if value is None:
            data.pop(key)
        else:
            data[key] = value
    path.write_text(json.dumps(data))


def test_a_good_folder_passes_the_checks(adapter):
    config = check_adapter_folder(adapter)
    assert config.num_queries == TINY["num_queries"] and config.loaded_from == str(adapter)


@pytest.mark.parametrize(
    "peft_type, message",
    [(None, 'no "peft_type" field'), ("LORA", "\"peft_type\" is 'LORA', not \"S4ECA\""), (7, '"peft_type" is a int')],
)
def test_a_changed_or_removed_peft_type_names_the_file(adapter, peft_type, message):
    edit_config(adapter, peft_type=peft_type)
    for load in (S4ECAConfig.from_pretrained, check_adapter_folder):
        with pytest.raises(AdapterFileError, match=message) as error:
            load(adapter)
        assert str(error.value).startswith(str(adapter / "adapter_config.json"))


def test_a_config_that_is_not_json_names_the_file(adapter):
    (adapter / "adapter_config.json").write_text('{"peft_type": "S4ECA", "num_queries": 4,,}')
    with pytest.raises(AdapterFileError, match=r"adapter_config.json: not valid JSON \(Expecting .* line 1, column"):
        check_adapter_folder(adapter)
    (adapter / "adapter_config.json").write_bytes(b'{"peft_type": "S4ECA\xff"}')
    with pytest.raises(AdapterFileError, match="adapter_config.json: not UTF-8 text"):
        S4ECAConfig.from_pretrained(adapter)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"num_queries": 10**9}, "`num_queries` must be an integer from 1 to 1024, got 1000000000"),
        ({"vision_bottleneck_size": 10**7}, "`vision_bottleneck_size` must be an integer from 1 to 16384"),
        ({"extractor_kernel_sizes": [3] * 100, "extractor_dilations": [1] * 100}, "at most 16 integers"),
        ({"extractor_kernel_sizes": [101, 3, 3]}, "odd integers from 1 to 31"),
        ({"vision_target_modules": "blocks.(0"}, r"`vision_target_modules` is not a valid regex \(missing \)"),
        ({"text_target_modules": [3]}, "`text_target_modules` must list at most 4096 module names"),
        ({"text_target_modules": ["x" * 257]}, "module names \\(strings of 1 to 256 characters\\)"),
        ({"vision_target_modules": r"(\w+\.?)+x"}, r"`vision_target_modules` is refused as a regex: it nests quantif"),
        ({"vision_target_modules": r"(?:a?){25}a{25}"}, "it nests quantifiers"),
        ({"text_target_modules": r"(?:layer|layer\.)*x"}, r"`text_target_modules` is refused as a regex: it repeats an"),
        ({"vision_target_modules": r".*.*.*.*x"}, "it holds more than 3 quantifiers"),
        ({"vision_target_modules": r"(a)\1"}, "it uses a backreference"),
    ],
)
def test_config_values_are_checked_before_any_allocation_naming_file_and_field(adapter, changes, message):
    edit_config(adapter, **changes)
    with pytest.raises(AdapterFileError, match=message) as error:
        check_adapter_folder(adapter)
    assert str(adapter / "adapter_config.json") in str(error.value)
    with pytest.raises(ValueError, match=message):
        S4ECAConfig(**{**TINY, **changes})


@pytest.mark.slow
def test_a_huge_num_queries_is_refused_before_allocating_under_a_memory_cap(adapter):
    edit_config(adapter, num_queries=10**9)
    result = run_capped(
        f"""
        from peft import PeftModel
        from tiny_models import build
        try:
            PeftModel.from_pretrained(build(), {str(adapter)!r})
        except ValueError as error:
            print("refused:", error)
        """
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"refused: {adapter / 'adapter_config.json'}: `num_queries` must be an integer from 1 to 1024" in (
        result.stdout
    )


@pytest.mark.slow
def test_a_catastrophic_target_regex_is_refused_before_any_matching(adapter):
    edit_config(adapter, vision_target_modules=r"(\w+\.?)+x")  # time doubling with each character of a name
    result = run_capped(
        f"""
        import time
        from peft import PeftModel
        from tiny_models import build
        base = build()
        started = time.perf_counter()
        try:
            PeftModel.from_pretrained(base, {str(adapter)!r})
        except ValueError as error:
            print("refused:", error)
        print(f"seconds: {{time.perf_counter() - started:.3f}}")
        """,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"refused: {adapter / 'adapter_config.json'}: `vision_target_modules` is refused as a regex" in result.stdout
    assert float(result.stdout.rsplit("seconds: ", 1)[1]) < 5


@pytest.mark.parametrize(
    "vision, text",
    [(r".*\.layers\.\d+\.blocks\.\d+", r".*\.encoder\.layer\.1"),
     (r"vision_model\.backbone\.swin\.encoder\.layers\.(0|3)\.blocks\.0", r"text_model\.encoder\.layer\.(1|7)"),
     (r"^(?!.*layers\.[12]\.).*\.blocks\.\d+$", r"(?:text_model)\.encoder\.layer\.[0-9]+(?=$)")],
)
def test_peft_style_target_regexes_still_select_their_blocks(swin_bert, vision, text):
    from s4eca_peft.tuner.targets import matches

    config = S4ECAConfig(**TINY, vision_target_modules=vision, text_target_modules=text)
    model = get_peft_model(copy.deepcopy(swin_bert), config)
    names = [name for name, _ in swin_bert.named_modules()]
    adapted = {name.removeprefix("base_model.model.") for name, module in model.named_modules()
               if hasattr(module, "s4eca_vision_adapter") or hasattr(module, "s4eca_text_adapter")}
    expected = {name for name in names if matches(vision, name) or matches(text, name)}
    assert adapted == expected and any("blocks" in name for name in adapted) and any("layer." in n for n in adapted)


@pytest.mark.parametrize(
    "changes, line",
    [
        ({"num_queries": 6}, "num_queries: adapter_config.json says 6, the weights hold 4"),
        ({"vision_bottleneck_size": 12}, "vision_bottleneck_size: adapter_config.json says 12, the weights hold 8"),
        ({"text_bottleneck_size": 8}, "text_bottleneck_size: adapter_config.json says 8, the weights hold 16"),
        ({"extractor_kernel_sizes": [3, 5, 3]}, "extractor_kernel_sizes: adapter_config.json says [3, 5, 3], the "
                                                "weights hold [3, 3, 3]"),
        ({"scale_selection": False}, "scale_selection: adapter_config.json says False, the weights hold True"),
    ],
)
def test_an_edited_config_is_reported_as_such_not_as_other_backbones(adapter, swin_bert, changes, line):
    edit_config(adapter, **changes)
    with pytest.raises(AdapterFileError) as error:
        PeftModel.from_pretrained(copy.deepcopy(swin_bert), str(adapter))
    message = str(error.value)
    assert line in message and message.startswith(f"{adapter}/adapter_model.safetensors: adapter_config.json does")
    assert "other sizes" not in message and "backbones" not in message
    with pytest.raises(AdapterFileError, match="does not describe these weights"):
        check_adapter_folder(adapter)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused_on_load(adapter, swin_bert, bad):
    weights = adapter / "adapter_model.safetensors"
    state = load_file(str(weights))
    key = next(k for k in state if k.endswith("s4eca_vision_adapter.up.weight"))
    state[key] = state[key].clone()
    state[key][0, 0] = bad
    save_file(state, str(weights))
    with pytest.raises(AdapterFileError, match=r"1 of \d+ adapter tensors hold NaN or infinite values") as error:
        PeftModel.from_pretrained(copy.deepcopy(swin_bert), str(adapter))
    assert str(error.value).startswith(f"{weights}:") and key in str(error.value)
    with pytest.raises(AdapterFileError, match="NaN or infinite"):
        check_adapter_folder(adapter)


def test_the_security_page_states_the_limits_in_force():
    from pathlib import Path

    from s4eca_peft import adapter_schema
    from s4eca_peft.data import safe_pickle
    from s4eca_peft.data.masks import MAX_OUTLINE_FACTOR
    from s4eca_peft.files import MAX_JSON_DEPTH
    from s4eca_peft.modeling.image_io import MAX_IMAGE_PIXELS
    from s4eca_peft.predict_command import MAX_LINE_BYTES
    from s4eca_peft.tuner import config

    text = (Path(__file__).resolve().parents[2] / "docs" / "security.md").read_text()
    limits = {name: getattr(config, name) for name in dir(config) if name.startswith("MAX_")}
    limits.update(MAX_OUTLINE_FACTOR=MAX_OUTLINE_FACTOR, MAX_DEPTH=safe_pickle.MAX_DEPTH,
                  MAX_JSON_DEPTH=MAX_JSON_DEPTH, MAX_LINE_BYTES=MAX_LINE_BYTES, MAX_IMAGE_PIXELS=MAX_IMAGE_PIXELS)
    limits.update({name: getattr(adapter_schema, name) for name in dir(adapter_schema) if name.startswith("MAX_")})
    schema = adapter_schema.SCHEMAS
    processor, base = schema["s4eca_processor_config.json"], schema["s4eca_base/config.json"]
    assert (processor["image_size"].high, processor["max_length"].high, base["decoder_dim"].high) == (
        adapter_schema.MAX_IMAGE_SIZE, adapter_schema.MAX_TOKENS, config.MAX_WIDTH)
    assert (processor["image_std"].low, processor["image_std"].high, processor["image_mean"].low) == (1e-6, 10, -10)
    for name, value in limits.items():
        assert f"`{name}` = {value}" in text, name
    assert safe_pickle.MAX_FILE_BYTES == 1 << 30 and "`MAX_FILE_BYTES` = 1 GiB" in text
    assert safe_pickle.EXPANSION_PER_BYTE == 16 and safe_pickle.MIN_EXPANDED_SIZE == 2**20
