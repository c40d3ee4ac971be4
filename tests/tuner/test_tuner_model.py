"""S4ECA on ReferringSegmentationModel: one table of (vision backbone, text encoder, config) cases run through the
same generic tests, as peft does for its own methods (tiny random configs, CPU)."""

from __future__ import annotations

import copy
import io
import json
import os
import subprocess
import sys
import textwrap
from contextlib import redirect_stdout

import pytest
import torch
from peft import PeftModel, get_peft_model, get_peft_model_state_dict
from safetensors.torch import load_file
from tiny_configs import IMAGE_SIZE, tiny_text_config, tiny_vision_config
from tiny_configs import tiny_inputs as make_inputs

from s4eca_peft import ReferringSegmentationConfig, ReferringSegmentationModel, S4ECAConfig
from s4eca_peft.tuner import S4ECALayer, S4ECATextLayer, S4ECAVisionLayer

TINY = {"num_queries": 4, "text_bottleneck_size": 16, "text_num_heads": 2, "vision_bottleneck_size": 8}

CASES = [
    ("swin", "bert", {}),
    ("convnext", "bert", {}),
    ("resnet", "bert", {}),
    ("vit", "bert", {}),
    ("dinov2", "bert", {}),
    ("swin", "roberta", {}),
    ("swin", "clip_text_model", {}),
    ("convnext", "clip_text_model", {"extractor_kernel_sizes": [3, 5], "extractor_dilations": [1, 2]}),
    ("resnet", "roberta", {"spatial_selection": False}),
    ("swin", "bert", {"scale_selection": False, "spatial_selection": False}),
]
CASE_IDS = [f"{v}-{t}" + ("-" + "-".join(f"{k}={v}" for k, v in c.items()) if c else "") for v, t, c in CASES]
# a smaller table for the slower multi-adapter tests: one hierarchical, one plain ViT-family, one CLIP text
SOME_CASES = [CASES[0], CASES[4], CASES[6]]



@pytest.fixture(scope="module")
def base_models() -> dict:
    return {}


@pytest.fixture
def build(base_models):
    """A fresh copy of the tiny base model for `(vision, text)`; built once per module."""

    def _build(vision: str, text: str) -> ReferringSegmentationModel:
        if (vision, text) not in base_models:
            torch.manual_seed(0)
            config = ReferringSegmentationConfig(
                vision_config=tiny_vision_config(vision), text_config=tiny_text_config(text), decoder_dim=16
            )
            base_models[vision, text] = ReferringSegmentationModel(config).eval()
        return copy.deepcopy(base_models[vision, text])

    return _build



def s4eca(case_kwargs: dict, **kwargs) -> S4ECAConfig:
    return S4ECAConfig(**{**TINY, **case_kwargs, **kwargs})


@torch.no_grad()
def run(model, inputs):
    return model(**inputs)


def trainable_names(model) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("vision, text, case", CASES, ids=CASE_IDS)
def test_init_equals_base(build, vision, text, case):
    base = build(vision, text)
    inputs = make_inputs()
    expected = run(base, inputs).logits
    model = get_peft_model(base, s4eca(case)).eval()
    assert (run(model, inputs).logits - expected).abs().max() < 1e-6


@pytest.mark.parametrize("vision, text, case", CASES, ids=CASE_IDS)
def test_adapters_change_the_features_the_head_consumes(build, vision, text, case):
    base = build(vision, text)
    inputs = make_inputs()
    reference = run(base, inputs)
    model = get_peft_model(base, s4eca(case, init_weights=False)).eval()
    out = run(model, inputs)
    # every vision feature map the head consumes moves; the text features move through the feedback (default) only
    for level, (new, old) in enumerate(zip(out.vision_features, reference.vision_features)):
        assert (new - old).abs().max() > 1e-5, f"vision feature {level} unchanged"
    uses_language = case.get("scale_selection", True) or case.get("spatial_selection", True)
    if uses_language:
        assert (out.text_hidden_states - reference.text_hidden_states).abs().max() > 1e-5
        assert (out.sentence_embedding - reference.sentence_embedding).abs().max() > 1e-5
    else:
        torch.testing.assert_close(out.text_hidden_states, reference.text_hidden_states, rtol=0, atol=0)
    assert not torch.allclose(out.logits, reference.logits)
    if case.get("scale_selection", True) or case.get("spatial_selection", True):
        # the text adapter reaches the head through the proxies that steer the vision adapters
        with torch.no_grad():
            for module in model.modules():
                if isinstance(module, S4ECATextLayer):
                    module.s4eca_text_adapter["default"].queries.add_(1.0)
        moved = run(model, inputs)
        assert all((a - b).abs().max() > 1e-6 for a, b in zip(moved.vision_features, out.vision_features))


def test_without_feedback_the_text_features_are_never_touched(build):
    base = build("swin", "bert")
    inputs = make_inputs()
    reference = run(base, inputs)
    model = get_peft_model(base, s4eca({}, init_weights=False, text_feedback=False)).eval()
    out = run(model, inputs)
    torch.testing.assert_close(out.text_hidden_states, reference.text_hidden_states, rtol=0, atol=0)
    assert not any("feedback" in name for name, _ in model.named_parameters())
    assert all((a - b).abs().max() > 1e-5 for a, b in zip(out.vision_features, reference.vision_features))


def test_feedback_adds_the_same_update_to_every_real_word(build):
    base = build("swin", "bert")
    inputs = make_inputs()
    reference = run(base, inputs)
    model = get_peft_model(base, s4eca({}, init_weights=False)).eval()
    out = run(model, inputs)
    shift = out.text_hidden_states - reference.text_hidden_states  # the adapter sits on the last text block
    torch.testing.assert_close(shift, shift[:, :1].expand_as(shift))
    assert shift.abs().max() > 1e-5


@pytest.mark.parametrize("vision, text, case", CASES, ids=CASE_IDS)
def test_save_load_round_trip_with_exact_keys(build, vision, text, case, tmp_path):
    inputs = make_inputs()
    model = get_peft_model(build(vision, text), s4eca(case, init_weights=False)).eval()
    expected = run(model, inputs).logits
    model.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "README.md",
        "adapter_config.json",
        "adapter_model.safetensors",
    ]
    saved = load_file(tmp_path / "adapter_model.safetensors")
    assert saved.keys() == get_peft_model_state_dict(model).keys()
    assert all(".s4eca_" in k or k.startswith("base_model.model.segmentation_head.") for k in saved)
    num_layers = sum(isinstance(m, S4ECALayer) for m in model.modules())
    assert len({k.split(".s4eca_")[0] for k in saved if ".s4eca_" in k}) == num_layers
    assert not any(".base_layer." in k for k in saved)  # no frozen backbone weights

    loaded = PeftModel.from_pretrained(build(vision, text), tmp_path).eval()
    reloaded = get_peft_model_state_dict(loaded)
    assert reloaded.keys() == saved.keys()
    assert all(torch.equal(reloaded[k], saved[k]) for k in saved)
    torch.testing.assert_close(run(loaded, inputs).logits, expected, rtol=0, atol=0)


@pytest.mark.parametrize("vision, text, case", CASES, ids=CASE_IDS)
def test_disable_adapter_equals_base_and_requires_grad(build, vision, text, case):
    base = build(vision, text)
    inputs = make_inputs()
    expected = run(base, inputs).logits
    model = get_peft_model(base, s4eca(case, init_weights=False)).eval()
    adapted = run(model, inputs).logits
    assert not torch.allclose(adapted, expected)
    with model.disable_adapter():
        torch.testing.assert_close(run(model, inputs).logits, expected, rtol=0, atol=0)
    torch.testing.assert_close(run(model, inputs).logits, adapted, rtol=0, atol=0)
    # trainable: exactly the adapters and the head copy
    names = trainable_names(model)
    assert names and all(".s4eca_" in n or ".modules_to_save.default." in n for n in names)
    assert any("segmentation_head.modules_to_save.default." in n for n in names)


@pytest.mark.parametrize("vision, text, case", CASES, ids=CASE_IDS)
def test_training_changes_output_and_only_adapters(build, vision, text, case):
    inputs = make_inputs()
    labels = (torch.rand(2, 1, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(3)) > 0.5).float()
    model = get_peft_model(build(vision, text), s4eca(case))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    initial = run(model.eval(), inputs).logits
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    for _ in range(3):
        optimizer.zero_grad()
        model(**inputs, labels=labels).loss.backward()
        optimizer.step()
    assert not torch.allclose(run(model.eval(), inputs).logits, initial)
    trainable = trainable_names(model)
    for name, param in model.named_parameters():
        changed = not torch.equal(param, before[name])
        if name in trainable:
            assert changed, f"{name} did not train"
        else:
            assert not changed, f"frozen {name} changed"


@pytest.mark.filterwarnings("ignore:Adapter name 'a' should not be contained in the prefix")
@pytest.mark.parametrize("vision, text, case", SOME_CASES, ids=lambda x: x if isinstance(x, str) else None)
def test_adapter_names_containing_one_another(build, vision, text, case, tmp_path):
    inputs = make_inputs()
    base_logits = run(build(vision, text), inputs).logits
    torch.manual_seed(1)
    model = get_peft_model(build(vision, text), s4eca(case, init_weights=False), adapter_name="a").eval()
    torch.manual_seed(2)
    model.add_adapter("a_b", s4eca(case, init_weights=False))
    outputs = {}
    for name in ("a", "a_b"):
        model.set_adapter(name)
        assert trainable_names(model) and all(f".{name}." in n for n in trainable_names(model))
        outputs[name] = run(model, inputs).logits
    assert not torch.allclose(outputs["a"], outputs["a_b"])
    assert not torch.allclose(outputs["a"], base_logits)

    model.save_pretrained(tmp_path)  # one subfolder per adapter name
    state_a = load_file(tmp_path / "a" / "adapter_model.safetensors")
    state_a_b = load_file(tmp_path / "a_b" / "adapter_model.safetensors")
    assert state_a.keys() == state_a_b.keys() and not any(".a." in k or ".a_b." in k for k in state_a)
    loaded = PeftModel.from_pretrained(build(vision, text), tmp_path / "a", adapter_name="a").eval()
    loaded.load_adapter(tmp_path / "a_b", adapter_name="a_b")
    for name in ("a", "a_b"):
        loaded.set_adapter(name)
        torch.testing.assert_close(run(loaded, inputs).logits, outputs[name], rtol=0, atol=0)

    loaded.delete_adapter("a")
    assert list(loaded.peft_config) == ["a_b"]
    with pytest.raises(ValueError, match=r"Unknown adapter\(s\) \['a'\]"):
        loaded.get_language_proxies("a")
    torch.testing.assert_close(run(loaded, inputs).logits, outputs["a_b"], rtol=0, atol=0)


@pytest.mark.parametrize("vision, text, case", SOME_CASES, ids=lambda x: x if isinstance(x, str) else None)
def test_unload_gives_the_base_model_back_and_merge_raises(build, vision, text, case):
    inputs = make_inputs()
    base = build(vision, text)
    expected = run(base, inputs).logits
    model = get_peft_model(base, s4eca(case, init_weights=False))
    with pytest.raises(ValueError, match="cannot be merged"):
        model.merge_and_unload()
    with pytest.raises(ValueError, match="cannot be merged"):
        model.merge_adapter()
    unloaded = model.unload()
    assert type(unloaded) is ReferringSegmentationModel
    assert not any(isinstance(m, S4ECALayer) for m in unloaded.modules())
    hooks = [h for m in unloaded.modules() for h in (*m._forward_hooks.values(), *m._forward_pre_hooks.values())]
    assert not any("s4eca" in type(getattr(h, "__self__", h)).__module__ for h in hooks)
    torch.testing.assert_close(run(unloaded, inputs).logits, expected, rtol=0, atol=0)


def test_print_trainable_parameters_is_true(build):
    model = get_peft_model(build("swin", "bert"), s4eca({}))
    buffer = io.StringIO()
    with redirect_stdout(buffer):
        model.print_trainable_parameters()
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    adapters = sum(
        p.numel()
        for m in model.modules()
        if isinstance(m, S4ECALayer)
        for n in m.adapter_layer_names
        for p in getattr(m, n).parameters()
    )
    head = sum(p.numel() for p in model.base_model.model.segmentation_head.modules_to_save.parameters())
    assert trainable == adapters + head
    assert f"trainable params: {trainable:,}" in buffer.getvalue()


def test_default_targets_and_head(build):
    model = get_peft_model(build("swin", "bert"), S4ECAConfig(**TINY))
    config = model.peft_config["default"]
    assert config.text_target_modules == ["text_model.encoder.layer.1"]  # the last text block
    assert len(config.vision_target_modules) == 4  # every SwinLayer (depths [1, 1, 1, 1])
    assert all(".blocks." in name for name in config.vision_target_modules)
    assert config.modules_to_save == ["segmentation_head"] and config.text_hidden_size == 32
    assert sum(isinstance(m, S4ECAVisionLayer) for m in model.modules()) == 4


@pytest.mark.slow  # a second Python process imports torch, transformers and peft
def test_resume_training_in_a_fresh_process(build, tmp_path):
    """Save base + adapter; a fresh process needs only `import s4eca_peft` to load them (PeftModel and
    AutoPeftModel), gets equal outputs with no missing or unexpected keys, and resumes training."""
    inputs = make_inputs()
    base_dir, adapter_dir = tmp_path / "base", tmp_path / "adapter"
    build("swin", "bert").save_pretrained(base_dir)
    base = ReferringSegmentationModel.from_pretrained(base_dir)
    model = get_peft_model(base, s4eca({}, init_weights=False)).eval()
    expected = run(model, inputs).logits
    model.save_pretrained(adapter_dir)
    assert json.loads((adapter_dir / "adapter_config.json").read_text())["base_model_name_or_path"] == str(base_dir)
    torch.save({"inputs": inputs, "expected": expected}, tmp_path / "io.pt")
    script = textwrap.dedent(
        f"""
        import warnings
        import torch
        import s4eca_peft
        from peft import AutoPeftModel, PeftConfig, PeftModel, get_peft_model_state_dict
        from safetensors.torch import load_file

        data = torch.load({str(tmp_path / "io.pt")!r})
        assert type(PeftConfig.from_pretrained({str(adapter_dir)!r})).__name__ == "S4ECAConfig"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            base = s4eca_peft.ReferringSegmentationModel.from_pretrained({str(base_dir)!r})
            model = PeftModel.from_pretrained(base, {str(adapter_dir)!r}).eval()
        assert not [w for w in caught if "key" in str(w.message).lower()], [str(w.message) for w in caught]
        saved = load_file({str(adapter_dir / "adapter_model.safetensors")!r})
        assert get_peft_model_state_dict(model).keys() == saved.keys()
        result = model.load_adapter({str(adapter_dir)!r}, adapter_name="again")
        assert result.missing_keys == [] and result.unexpected_keys == [], result
        with torch.no_grad():
            torch.testing.assert_close(model(**data["inputs"]).logits, data["expected"], rtol=0, atol=0)
        assert not any(p.requires_grad for p in model.parameters())  # inference by default

        auto = AutoPeftModel.from_pretrained({str(adapter_dir)!r}, import_allowlist=["s4eca_peft"]).eval()
        with torch.no_grad():
            torch.testing.assert_close(auto(**data["inputs"]).logits, data["expected"], rtol=0, atol=0)

        base = s4eca_peft.ReferringSegmentationModel.from_pretrained({str(base_dir)!r})
        model = PeftModel.from_pretrained(base, {str(adapter_dir)!r}, is_trainable=True)
        params = [p for p in model.parameters() if p.requires_grad]
        assert params and all(".s4eca_" in n or "modules_to_save" in n
                              for n, p in model.named_parameters() if p.requires_grad)
        optimizer = torch.optim.SGD(params, lr=0.1)
        labels = torch.ones(2, 1, 64, 64)
        model.train()
        model(**data["inputs"], labels=labels).loss.backward()
        optimizer.step()
        with torch.no_grad():
            assert not torch.allclose(model.eval()(**data["inputs"]).logits, data["expected"])
        print("OK")
        """
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("OK")
