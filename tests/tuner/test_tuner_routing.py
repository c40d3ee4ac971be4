"""Proxy routing and the layers' handling of inputs: bare backbones, padding masks, token grids, several text
adapters, mixed precision, gradient checkpointing and the selection maps. How long proxies live (one forward, one
thread) is tested in test_tuner_proxy_lifetime.py."""

from __future__ import annotations

import copy
import threading

import pytest
import torch
from peft import get_peft_model
from tiny_configs import IMAGE_SIZE, VOCAB_SIZE, tiny_text_config, tiny_vision_config
from transformers import (
    BertModel,
    CLIPTextModel,
    ConvNextModel,
    Dinov2Model,
    Dinov2WithRegistersConfig,
    Dinov2WithRegistersModel,
    ResNetConfig,
    ResNetModel,
    RobertaModel,
    SwinModel,
    ViTModel,
)

from s4eca_peft import ReferringSegmentationConfig, ReferringSegmentationModel, S4ECAConfig
from s4eca_peft.tuner import S4ECATextLayer, S4ECAVisionLayer
from s4eca_peft.tuner.routing import ForwardScope
from s4eca_peft.tuner.vision_adapter import S4ECAVisionAdapter

TINY = {"num_queries": 4, "text_bottleneck_size": 16, "text_num_heads": 2, "vision_bottleneck_size": 8}
BARE_VISION = {
    "swin": lambda: SwinModel(tiny_vision_config("swin")),
    "convnext": lambda: ConvNextModel(tiny_vision_config("convnext")),
    "resnet": lambda: ResNetModel(tiny_vision_config("resnet")),
    "resnet-bottleneck": lambda: ResNetModel(ResNetConfig(embedding_size=8, hidden_sizes=[16, 32], depths=[1, 1])),
    "vit": lambda: ViTModel(tiny_vision_config("vit"), add_pooling_layer=False),
    "dinov2": lambda: Dinov2Model(tiny_vision_config("dinov2")),
}



def features(output) -> torch.Tensor:
    return output.last_hidden_state


@pytest.mark.parametrize("vision", sorted(BARE_VISION))
def test_bare_vision_backbone_with_explicit_proxies(vision):
    torch.manual_seed(0)
    base = BARE_VISION[vision]().eval()
    pixel_values = torch.randn(2, 3, IMAGE_SIZE, IMAGE_SIZE)
    with torch.no_grad():
        expected = features(base(pixel_values=pixel_values))
    model = get_peft_model(copy.deepcopy(base), S4ECAConfig(**TINY, text_hidden_size=12, init_weights=False)).eval()
    assert model.peft_config["default"].modules_to_save == []  # no head on a bare backbone
    model.set_language_proxies(torch.randn(1, 4, 12))  # one expression for the whole batch is broadcast
    with torch.no_grad():
        adapted = features(model(pixel_values=pixel_values))
        with model.disable_adapter():
            torch.testing.assert_close(features(model(pixel_values=pixel_values)), expected, rtol=0, atol=0)
    assert adapted.shape == expected.shape and not torch.allclose(adapted, expected)


@pytest.mark.parametrize("size", [(64, 64), (64, 32)], ids=["square", "non-square"])
def test_vit_prefix_tokens_are_left_alone_and_the_grid_follows_the_image(size):
    torch.manual_seed(0)
    config = tiny_vision_config("vit")
    config.num_hidden_layers = 1
    base = ViTModel(config, add_pooling_layer=False).eval()
    model = get_peft_model(base, S4ECAConfig(**TINY, text_hidden_size=12, init_weights=False)).eval()
    model.set_language_proxies(torch.randn(1, 4, 12))
    pixel_values = torch.randn(1, 3, *size)
    with torch.no_grad():
        adapted = model(pixel_values=pixel_values, interpolate_pos_encoding=True).last_hidden_state
        with model.disable_adapter():
            plain = model(pixel_values=pixel_values, interpolate_pos_encoding=True).last_hidden_state
    torch.testing.assert_close(adapted[:, 0], plain[:, 0], rtol=0, atol=0)  # CLS after the only block
    assert (adapted[:, 1:] - plain[:, 1:]).abs().amax(-1).min() > 0  # every patch token is adapted


def test_dinov2_register_tokens_are_prefix_tokens():
    torch.manual_seed(0)
    config = Dinov2WithRegistersConfig(
        image_size=IMAGE_SIZE,
        patch_size=8,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        mlp_ratio=2,
        num_register_tokens=2,
    )
    model = get_peft_model(Dinov2WithRegistersModel(config).eval(), S4ECAConfig(**TINY, text_hidden_size=12))
    layer = next(m for m in model.modules() if isinstance(m, S4ECAVisionLayer))
    with torch.no_grad():
        layer.s4eca_vision_adapter["default"].up.weight.normal_()
    model.eval().set_language_proxies(torch.randn(1, 4, 12))  # for the next call: the block's own
    tokens = torch.randn(1, 3 + 64, 16)  # CLS + 2 registers + an 8 x 8 grid
    with torch.no_grad():
        adapted = layer(tokens)
        with model.disable_adapter():
            plain = layer(tokens)
    torch.testing.assert_close(adapted[:, :3], plain[:, :3], rtol=0, atol=0)  # prefix tokens untouched
    assert (adapted[:, 3:] - plain[:, 3:]).abs().amax(-1).min() > 0


TEXT_MODELS = {
    "bert-sdpa": lambda: BertModel(tiny_text_config("bert"), add_pooling_layer=False),
    "bert-eager": lambda: BertModel(_eager(tiny_text_config("bert")), add_pooling_layer=False),
    "roberta": lambda: RobertaModel(tiny_text_config("roberta"), add_pooling_layer=False),
    "clip-sdpa": lambda: CLIPTextModel(tiny_text_config("clip_text_model")),
    "clip-eager": lambda: CLIPTextModel(_eager(tiny_text_config("clip_text_model"))),
}


def _eager(config):
    config._attn_implementation = "eager"
    return config


@pytest.mark.parametrize("text", sorted(TEXT_MODELS))
@pytest.mark.parametrize("mask_source", ["recorded 2-D mask", "block's 4-D mask"])
def test_padding_is_masked_in_the_text_adapter(text, mask_source):
    torch.manual_seed(0)
    model = get_peft_model(TEXT_MODELS[text]().eval(), S4ECAConfig(**TINY)).eval()
    if mask_source == "block's 4-D mask":
        for module in model.modules():
            for hook in module._forward_pre_hooks.values():
                if isinstance(hook, ForwardScope):
                    hook.records_text = False
    ids = torch.randint(3, VOCAB_SIZE, (1, 5))
    padded = torch.cat([ids, torch.ones(1, 3, dtype=torch.long)], dim=1)
    mask = torch.cat([torch.ones(1, 5), torch.zeros(1, 3)], dim=1).long()
    with torch.no_grad():
        model(input_ids=ids, attention_mask=torch.ones(1, 5, dtype=torch.long))
        alone = model.get_language_proxies()
        out = model(input_ids=padded, attention_mask=mask)
        with_padding = model.get_language_proxies()
    assert with_padding.shape == (1, 4, 32)
    torch.testing.assert_close(with_padding, alone, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(
        out.last_hidden_state[:, :5],
        model.get_base_model()(input_ids=padded, attention_mask=mask).last_hidden_state[:, :5],
    )


def test_several_text_adapters_refine_the_same_proxies():
    torch.manual_seed(0)
    config = ReferringSegmentationConfig(
        vision_config=tiny_vision_config("convnext"), text_config=tiny_text_config("bert"), decoder_dim=16
    )
    text_targets = ["text_model.encoder.layer.0", "text_model.encoder.layer.1"]
    model = get_peft_model(
        ReferringSegmentationModel(config), S4ECAConfig(**TINY, text_target_modules=text_targets, init_weights=False)
    )
    layers = [m for m in model.modules() if isinstance(m, S4ECATextLayer)]
    assert [layer.s4eca_text_index["default"] for layer in layers] == [0, 1]
    inputs = {
        "pixel_values": torch.randn(2, 3, IMAGE_SIZE, IMAGE_SIZE),
        "input_ids": torch.randint(3, VOCAB_SIZE, (2, 6)),
        "labels": torch.ones(2, 1, IMAGE_SIZE, IMAGE_SIZE),
    }
    model(**inputs).loss.backward()
    for layer in layers:
        grads = [p.grad for p in layer.s4eca_text_adapter["default"].parameters()]
        assert all(g is not None and g.abs().sum() > 0 for g in grads)


def _tiny_model(vision: str = "swin") -> ReferringSegmentationModel:
    torch.manual_seed(0)
    config = ReferringSegmentationConfig(
        vision_config=tiny_vision_config(vision), text_config=tiny_text_config("bert"), decoder_dim=16
    )
    return ReferringSegmentationModel(config)


def _inputs(batch: int = 2) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return {
        "pixel_values": torch.randn(batch, 3, IMAGE_SIZE, IMAGE_SIZE, generator=generator),
        "input_ids": torch.randint(3, VOCAB_SIZE, (batch, 6), generator=generator),
        "attention_mask": torch.ones(batch, 6, dtype=torch.long),
    }


def test_autocast_and_low_precision_bases():
    model = get_peft_model(_tiny_model(), S4ECAConfig(**TINY, init_weights=False)).eval()
    with torch.no_grad():
        full = model(**_inputs()).logits
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = model(**_inputs()).logits
    assert torch.isfinite(mixed).all() and (mixed.float() - full).abs().max() < 0.1 * full.abs().max() + 0.1

    base = _tiny_model().to(torch.bfloat16)
    model = get_peft_model(base, S4ECAConfig(**TINY, init_weights=False)).eval()  # adapters upcast to float32
    assert {p.dtype for n, p in model.named_parameters() if ".s4eca_" in n} == {torch.float32}
    inputs = _inputs()
    inputs["pixel_values"] = inputs["pixel_values"].bfloat16()
    with torch.no_grad():
        logits = model(**inputs).logits
    assert logits.dtype == torch.bfloat16 and torch.isfinite(logits).all()


@pytest.mark.parametrize("use_reentrant", [False, True], ids=["non-reentrant", "reentrant"])
def test_gradient_checkpointing_replays_the_adapters_with_the_proxies_of_their_forward(use_reentrant):
    """transformers 5 checkpoints a layer's `forward`: a block's own hooks stay outside its checkpoint, but Swin's
    checkpointed stages replay their blocks, hooks included, in backward. The replay must use the proxies of the
    forward it replays, after that forward returned, after another forward, and on another thread (as CUDA's
    backward does)."""
    inputs = {**_inputs(), "labels": torch.ones(2, 1, IMAGE_SIZE, IMAGE_SIZE)}
    other = {**_inputs(), "input_ids": torch.randint(3, VOCAB_SIZE, (2, 6)), "labels": inputs["labels"]}
    grads, replays = {}, {}
    for checkpointing in (False, True):
        model = get_peft_model(_tiny_model(), S4ECAConfig(**TINY, init_weights=False))
        if checkpointing:
            # enabled after wrapping: enabled before, PeftModel calls transformers' `enable_input_require_grads`,
            # whose hook fails on Swin's patch embeddings (they return a tuple); reentrant needs inputs with grads
            model.get_base_model().gradient_checkpointing_enable({"use_reentrant": use_reentrant})
            if use_reentrant:
                model.get_base_model().enable_input_require_grads()
            stage = model.get_base_model().vision_model.backbone.swin.encoder.layers[0]
            assert stage.gradient_checkpointing and stage.blocks[0].gradient_checkpointing
        model.train()
        adapters = [m for m in model.modules() if isinstance(m, S4ECAVisionAdapter)]
        calls = [0]

        def count(*_, calls=calls) -> None:
            calls[0] += 1

        for adapter in adapters:
            adapter.register_forward_hook(count)
        loss = model(**inputs).loss
        model(**other)  # another forward before the backward of the first
        before = calls[0]
        backward = threading.Thread(target=loss.backward)
        backward.start()
        backward.join()
        replays[checkpointing] = calls[0] - before
        grads[checkpointing] = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    # every Swin block sits in a checkpointed stage; non-reentrant recompute stops once it has what backward needs
    assert replays[False] == 0 and 0 < replays[True] <= len(adapters)
    assert grads[True].keys() == grads[False].keys()
    for name, grad in grads[False].items():
        assert grad is not None and grad.abs().sum() > 0, name
        torch.testing.assert_close(grads[True][name], grad, rtol=1e-4, atol=1e-6, msg=name)


def test_selection_maps_for_visualisation():
    model = get_peft_model(_tiny_model(), S4ECAConfig(**TINY)).eval()
    with torch.no_grad():
        model(**_inputs())
    assert model.get_selection_maps() == {}
    model.record_selection_maps()
    with torch.no_grad():
        model(**_inputs())
    maps = model.get_selection_maps()
    assert len(maps) == 4 and all(".blocks." in name for name in maps)
    for (_name, entry), side in zip(sorted(maps.items()), (16, 8, 4, 2)):
        assert entry["scale_weights"].shape == (2, 3, 8)
        torch.testing.assert_close(entry["scale_weights"].sum(1), torch.ones(2, 8))
        assert entry["spatial_gate"].shape == (2, 1, side, side)
        assert ((entry["spatial_gate"] > 0) & (entry["spatial_gate"] < 1)).all()
    model.record_selection_maps(False)
    assert model.get_selection_maps() == {}


def test_minilm_is_bert(minilm_path):
    """A real MiniLM checkpoint is a BERT: the default text target is its last layer, proxies are 384 wide."""
    text = BertModel.from_pretrained(minilm_path, add_pooling_layer=False)
    config = ReferringSegmentationConfig(
        vision_config=tiny_vision_config("swin"), text_config=text.config, decoder_dim=16
    )
    base = ReferringSegmentationModel(config, text_model=text).eval()
    inputs = _inputs()
    with torch.no_grad():
        expected = base(**inputs).logits
    model = get_peft_model(base, S4ECAConfig(**TINY)).eval()
    resolved = model.peft_config["default"]
    assert resolved.text_target_modules == [f"text_model.encoder.layer.{text.config.num_hidden_layers - 1}"]
    assert resolved.text_hidden_size == 384
    with torch.no_grad():
        torch.testing.assert_close(model(**inputs).logits, expected, rtol=0, atol=1e-6)
    assert model.get_language_proxies().shape == (2, 4, 384)
