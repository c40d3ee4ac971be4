"""The referring-segmentation base model on every supported backbone family (tiny random configs)."""

from __future__ import annotations

import pytest
import torch
from tiny_configs import IMAGE_SIZE, TEXT_TYPES, VISION_TYPES, tiny_text_config, tiny_vision_config
from tiny_configs import tiny_inputs as inputs
from transformers import AutoConfig, AutoModel, SwinConfig, SwinModel

from s4eca_peft import ReferringSegmentationConfig, ReferringSegmentationModel, ReferringSegmentationOutput


def build(vision: str = "swin", text: str = "bert", **kwargs) -> ReferringSegmentationModel:
    torch.manual_seed(0)
    config = ReferringSegmentationConfig(
        vision_config=tiny_vision_config(vision), text_config=tiny_text_config(text), decoder_dim=16, **kwargs
    )
    return ReferringSegmentationModel(config)



def labels_for(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    b, _, h, w = batch["pixel_values"].shape
    labels = torch.zeros(b, 1, h, w)
    labels[:, :, h // 4 : h // 2, w // 3 :] = 1
    return labels


CASES = [(v, "bert") for v in VISION_TYPES] + [("swin", t) for t in TEXT_TYPES if t != "bert"]


@pytest.mark.parametrize("vision,text", CASES)
def test_forward_backward_and_round_trip(vision, text, tmp_path):
    model = build(vision, text)
    batch = inputs()
    out = model(**batch, labels=labels_for(batch))
    assert isinstance(out, ReferringSegmentationOutput)
    # documented shapes
    assert out.logits.shape == (2, 1, IMAGE_SIZE // 4, IMAGE_SIZE // 4)
    assert out.text_hidden_states.shape == (2, 7, 32)
    assert out.sentence_embedding.shape == (2, 32)
    assert [f.shape[-1] for f in out.vision_features] == [IMAGE_SIZE // s for s in (4, 8, 16, 32)]
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)

    # backward reaches the head only: both encoders are frozen by requires_grad
    out.loss.backward()
    for name, parameter in model.named_parameters():
        if name.startswith("segmentation_head."):
            assert parameter.requires_grad and parameter.grad is not None, name
        else:
            assert not parameter.requires_grad and parameter.grad is None, name

    model.eval()
    with torch.no_grad():
        expected = model(**batch).logits
    model.save_pretrained(tmp_path)
    loaded = AutoModel.from_pretrained(tmp_path).eval()
    assert isinstance(loaded, ReferringSegmentationModel)
    assert not any(p.requires_grad for n, p in loaded.named_parameters() if not n.startswith("segmentation_head."))
    with torch.no_grad():
        torch.testing.assert_close(loaded(**batch).logits, expected, atol=1e-5, rtol=1e-4)


def test_minilm_pretrained_text_encoder_from_backbones(tmp_path, minilm_path):
    vision_dir = tmp_path / "swin"
    SwinModel(tiny_vision_config("swin")).save_pretrained(vision_dir)
    model = ReferringSegmentationModel.from_backbones(str(vision_dir), minilm_path, decoder_dim=16)
    assert model.config.text_name_or_path == minilm_path
    assert model.config.text_config.model_type == "bert"
    assert model.text_model.config._attn_implementation == "sdpa"
    # pretrained weights are kept, not re-initialised
    from transformers import BertModel

    reference = BertModel.from_pretrained(minilm_path, add_pooling_layer=False)
    torch.testing.assert_close(
        model.text_model.embeddings.word_embeddings.weight, reference.embeddings.word_embeddings.weight
    )
    batch = inputs()
    batch["input_ids"] = torch.randint(1000, 2000, batch["input_ids"].shape)
    out = model(**batch)
    assert out.text_hidden_states.shape[-1] == 384
    assert out.logits.shape == (2, 1, IMAGE_SIZE // 4, IMAGE_SIZE // 4)
    assert not any(p.requires_grad for p in model.text_model.parameters())


def test_auto_config_registration():
    config = ReferringSegmentationConfig(vision_config=tiny_vision_config("swin"), text_config=tiny_text_config("bert"))
    round_trip = AutoConfig.for_model(**config.to_dict())
    assert isinstance(round_trip, ReferringSegmentationConfig)
    assert round_trip.vision_config.embed_dim == 16
    assert round_trip.text_config.hidden_size == 32


def test_config_from_dicts():
    config = ReferringSegmentationConfig(
        vision_config=tiny_vision_config("convnext").to_dict(), text_config=tiny_text_config("roberta").to_dict()
    )
    assert config.vision_config.model_type == "convnext"
    assert config.text_config.model_type == "roberta"


def test_gradient_checkpointing_and_bf16_autocast():
    model = build("swin", "bert")
    batch = inputs()
    model.gradient_checkpointing_enable()
    model.train()
    out = model(**batch, labels=labels_for(batch))
    out.loss.backward()
    assert model.segmentation_head.classifier.weight.grad is not None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(**batch, labels=labels_for(batch))
    assert out.logits.dtype == torch.bfloat16
    assert out.loss.dtype == torch.float32 and torch.isfinite(out.loss)


@pytest.mark.parametrize("vision", ["swin", "resnet"])
def test_gradient_checkpointing_enabled_before_peft_wrapping(vision):
    from peft import get_peft_model

    from s4eca_peft import S4ECAConfig

    model = build(vision, "bert")
    model.gradient_checkpointing_enable()
    peft_model = get_peft_model(model, S4ECAConfig(num_queries=4, text_bottleneck_size=16, vision_bottleneck_size=8))
    peft_model.train()
    batch = inputs()
    peft_model(**batch, labels=labels_for(batch)).loss.backward()
    grads = [p.grad for n, p in peft_model.named_parameters() if "s4eca_vision" in n and p.requires_grad]
    assert grads and all(g is not None for g in grads)


@pytest.mark.parametrize("checkpointing", [False, True])
def test_encoders_eval_keeps_checkpointed_blocks_recomputing(checkpointing):
    """Frozen encoders in eval mode (as in training) still recompute their innermost blocks in backward when
    gradient checkpointing is on, once each, and no dropout runs."""
    from peft import get_peft_model
    from transformers.models.bert.modeling_bert import BertLayer
    from transformers.models.swin.modeling_swin import SwinLayer, SwinStage

    from s4eca_peft import S4ECAConfig

    model = build("swin", "bert")
    peft_model = get_peft_model(model, S4ECAConfig(num_queries=4, text_bottleneck_size=16, vision_bottleneck_size=8))
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    peft_model.train()
    model.encoders_eval()
    # transformers checkpoints a layer's `forward` (hooks on the layer itself run once): count its attention's calls,
    # in the last Swin layer (the first ones see only frozen inputs and need no backward)
    calls = []
    last_layer = [m for m in model.modules() if isinstance(m, SwinLayer)][-1]
    last_layer.attention.register_forward_pre_hook(lambda *_: calls.append(1))
    batch = inputs()
    peft_model(**batch, labels=labels_for(batch)).loss.backward()
    assert len(calls) == (2 if checkpointing else 1)  # recomputed once, not twice (the Swin stages are not)
    training_blocks = {type(m) for m in model.modules() if isinstance(m, (SwinLayer, SwinStage, BertLayer)) and m.training}
    assert training_blocks == ({SwinLayer, BertLayer} if checkpointing else set())
    assert not any(m.training for m in model.modules() if isinstance(m, torch.nn.Dropout))
    assert model.segmentation_head.training


def test_training_the_head_changes_the_output():
    model = build("swin", "bert")
    batch = inputs()
    before = model(**batch).logits.detach()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(2):
        loss = model(**batch, labels=labels_for(batch)).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    assert not torch.allclose(model(**batch).logits, before)


def test_a_head_that_reads_no_sentence_has_no_sentence_parameters_and_ignores_the_expression(tmp_path):
    model = build("swin", "bert", head_reads_sentence=False).eval()
    head = model.segmentation_head
    assert head.film is None and head.dynamic_kernel is None
    names = {name for name, _ in head.named_parameters()}
    assert not any(name.startswith(("film.", "dynamic_kernel.")) for name in names)
    with_sentence = build("swin", "bert").eval()
    assert count(with_sentence.segmentation_head) - count(head) == (
        count(with_sentence.segmentation_head.film) + count(with_sentence.segmentation_head.dynamic_kernel))

    batch = inputs()
    other_words = dict(batch, input_ids=batch["input_ids"].flip(1))
    logits = model(**batch).logits
    assert torch.equal(model(**other_words).logits, logits)  # nothing but the features reaches the mask
    assert not torch.allclose(with_sentence(**other_words).logits, with_sentence(**batch).logits)

    model.save_pretrained(tmp_path)
    reloaded = ReferringSegmentationModel.from_pretrained(tmp_path)
    assert reloaded.config.head_reads_sentence is False
    assert torch.allclose(reloaded(**batch).logits, logits)


def test_a_config_saved_before_the_head_option_existed_reads_the_sentence():
    config = ReferringSegmentationConfig.from_dict(
        {key: value for key, value in build().config.to_dict().items() if key != "head_reads_sentence"})
    assert config.head_reads_sentence is True


def check_head_option_saved_and_refused_without_a_sentence(model, plain, batch, option, folder):
    """A head option set on ``model`` survives saving; a config saved before the option (without the field) loads
    with it off; the option is refused on a head that reads no sentence."""
    model.save_pretrained(folder)
    reloaded = ReferringSegmentationModel.from_pretrained(folder).eval()
    assert getattr(reloaded.config, option) is True
    assert torch.allclose(reloaded(**batch).logits, model(**batch).logits)
    older = {k: v for k, v in plain.config.to_dict().items() if k != option}
    assert getattr(ReferringSegmentationConfig.from_dict(older), option) is False
    with pytest.raises(ValueError, match=f"`{option}` needs `head_reads_sentence`"):
        ReferringSegmentationConfig(head_reads_sentence=False, **{option: True})


def test_the_place_kernel_adds_a_sentence_generated_term_over_x_y_and_their_squares(tmp_path):
    plain = build("swin", "bert").eval()
    model = build("swin", "bert", head_place_kernel=True).eval()
    model.load_state_dict(plain.state_dict(), strict=False)  # the same weights but the place kernel's
    kernel = model.segmentation_head.place_kernel
    assert kernel.out_features == 4 and plain.segmentation_head.place_kernel is None
    batch = inputs()
    with torch.no_grad():
        kernel.weight.zero_()
        kernel.bias.copy_(torch.tensor([0.0, 0.0, 0.0, 0.0]))
        assert torch.equal(model(**batch).logits, plain(**batch).logits)
        kernel.bias.copy_(torch.tensor([2.0, -1.0, 0.5, 0.0]))  # 2x - y + x²/2, x and y in [-1, 1]
        added = model(**batch).logits - plain(**batch).logits
    side = added.shape[-1]
    x = torch.linspace(-1, 1, side).view(1, side)
    y = torch.linspace(-1, 1, side).view(side, 1)
    assert torch.allclose(added, (2 * x - y + x.square() / 2).expand(2, 1, side, side), atol=1e-5)
    with torch.no_grad():
        kernel.weight.normal_()
        other_words = dict(batch, input_ids=batch["input_ids"].flip(1))
        assert not torch.allclose(model(**other_words).logits - plain(**other_words).logits,
                                  model(**batch).logits - plain(**batch).logits)  # the sentence chooses the term

    check_head_option_saved_and_refused_without_a_sentence(model, plain, batch, "head_place_kernel", tmp_path)


def test_the_rank_kernel_adds_a_sentence_weight_to_each_candidate_objects_rank_from_each_side(tmp_path):
    from s4eca_peft.modeling.head import MAX_RANK, SegmentationHead

    plain = build("swin", "bert").eval()
    model = build("swin", "bert", head_rank_kernel=True).eval()
    model.load_state_dict(plain.state_dict(), strict=False)  # the same weights but the rank kernel's
    kernel = model.segmentation_head.rank_kernel
    assert kernel.out_features == 4 * MAX_RANK and plain.segmentation_head.rank_kernel is None
    batch = inputs()
    with torch.no_grad():
        kernel.weight.zero_()
        kernel.bias.zero_()
        base = plain(**batch).logits
        assert torch.equal(model(**batch).logits, base)
        kernel.bias[0] = 5.0  # channel 0: the first object from the left
        added = model(**batch).logits - base
    terms = SegmentationHead.rank_terms(base)  # the candidates are read from the logits without the rank term
    assert terms.shape == (2, 4 * MAX_RANK, *base.shape[-2:]) and set(terms.unique().tolist()) <= {0.0, 1.0}
    assert torch.allclose(added, 5.0 * terms[:, :1], atol=1e-5)
    assert terms[:, 0].sum(dim=(-2, -1)).gt(0).all()  # each image has a first object from the left

    logits = torch.full((1, 1, 8, 12), -6.0)  # three bright regions of likely pixels: ranks 1 to 3 from the left
    for columns in (slice(1, 3), slice(5, 7), slice(9, 11)):
        logits[..., 2:4, columns] = 2.0
    terms = SegmentationHead.rank_terms(logits)[0]
    for rank, columns in enumerate((slice(1, 3), slice(5, 7), slice(9, 11)), start=1):
        assert terms[rank - 1, 2:4, columns].eq(1).all() and terms[MAX_RANK + 3 - rank, 2:4, columns].eq(1).all()
    assert int(terms[:MAX_RANK].sum()) == 12 and terms[:, 0].eq(0).all()  # left: one rank per cell; none outside

    check_head_option_saved_and_refused_without_a_sentence(model, plain, batch, "head_rank_kernel", tmp_path)


def test_the_category_map_gives_the_rank_kernel_its_candidates_and_learns_every_object_of_the_category(tmp_path):
    from s4eca_peft.modeling.head import SegmentationHead

    ranked = build("swin", "bert", head_rank_kernel=True).eval()
    model = build("swin", "bert", head_rank_kernel=True, head_category_map=True).eval()
    model.load_state_dict(ranked.state_dict(), strict=False)  # the same weights but the category map's
    head = model.segmentation_head
    batch = inputs()
    assert ranked.segmentation_head.category_kernel is None and ranked(**batch).category_logits is None
    with torch.no_grad():
        for kernel in (head.rank_kernel, ranked.segmentation_head.rank_kernel):
            kernel.weight.zero_()
            kernel.bias.zero_()
        torch.manual_seed(1)
        head.classifier.weight.normal_()  # a mask whose own candidates are some pixels only
        ranked.segmentation_head.classifier.weight.copy_(head.classifier.weight)
        base = ranked(**batch).logits  # no rank term
        head.rank_kernel.bias[0] = 5.0  # the first object from the left
        head.category_kernel.weight.zero_()
        head.category_kernel.bias.zero_()
        head.category_classifier.weight.zero_()  # a flat category map: one object covering the image
        out = model(**batch)
    assert out.category_logits.shape == out.logits.shape
    assert torch.allclose(out.logits - base, torch.full_like(base, 5.0), atol=1e-5)  # ranked in the category map
    own = SegmentationHead.rank_terms(base)[:, :1]  # the mask's own candidates would mark only some pixels
    assert own.sum() < own.numel()

    labels = labels_for(batch)
    category = labels.clone()
    category[:, :, -4:, :4] = 1  # another object of the category
    model.train()
    with torch.no_grad():
        head.category_classifier.weight.normal_(std=0.1)
    with_category = model(**batch, labels=labels, category_labels=category)
    target_only = model(**batch, labels=labels)  # without category masks the map learns the target mask
    assert not torch.isclose(with_category.loss, target_only.loss)
    with_category.loss.backward()
    assert head.category_kernel.weight.grad.abs().sum() > 0 and head.category_classifier.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="`category_labels` must have shape"):
        model(**batch, labels=labels, category_labels=category[:, :, :-1])

    model.eval().save_pretrained(tmp_path)
    reloaded = ReferringSegmentationModel.from_pretrained(tmp_path).eval()
    assert reloaded.config.head_category_map is True
    assert torch.allclose(reloaded(**batch).category_logits, model(**batch).category_logits)
    older = {k: v for k, v in ranked.config.to_dict().items() if k != "head_category_map"}
    assert ReferringSegmentationConfig.from_dict(older).head_category_map is False
    with pytest.raises(ValueError, match="`head_category_map` needs `head_rank_kernel`"):
        ReferringSegmentationConfig(head_category_map=True)


def check_rank_option_saves_and_loads(model: ReferringSegmentationModel, batch: dict[str, torch.Tensor], folder,
                                      option: str) -> None:
    """A model built with the rank kernel's ``option`` on saves and loads with it and the same logits; a config saved
    before the option loads with it off; the config and the head refuse it without the rank kernel."""
    from s4eca_peft.modeling.head import SegmentationHead

    model.eval().save_pretrained(folder)
    reloaded = ReferringSegmentationModel.from_pretrained(folder).eval()
    assert getattr(reloaded.config, option) is True
    with torch.no_grad():
        assert torch.allclose(reloaded(**batch).logits, model(**batch).logits, atol=1e-6)
    older = {k: v for k, v in model.config.to_dict().items() if k != option}
    assert getattr(ReferringSegmentationConfig.from_dict(older), option) is False
    with pytest.raises(ValueError, match=f"`{option}` needs `head_rank_kernel`"):
        ReferringSegmentationConfig(**{option: True})
    head_option = option.removeprefix("head_")
    with pytest.raises(ValueError, match=f"`{head_option}` is part of the rank kernel"):
        SegmentationHead([8, 16, 32, 64], 12, **{head_option: True})


def test_the_rank_kernel_can_read_the_words_through_attention_pools(tmp_path):
    from s4eca_peft.modeling.head import RANK_WORD_POOLS

    model = build("swin", "bert", head_rank_kernel=True, head_category_map=True, head_rank_words=True).eval()
    head = model.segmentation_head
    assert head.rank_kernel.in_features == RANK_WORD_POOLS * model.config.text_config.hidden_size
    read = []
    head.rank_kernel.register_forward_hook(lambda module, args, output: read.append(output.detach()))
    batch = inputs()
    with torch.no_grad():
        head.rank_word_scores.weight.normal_()  # pools that prefer some words
        model(**batch)
        padding, word = batch["input_ids"].clone(), batch["input_ids"].clone()
        padding[-1, -1] += 1  # a padded token of the last sample
        word[-1, 0] += 1  # one of its words
        model(**dict(batch, input_ids=padding))
        model(**dict(batch, input_ids=word))
    assert torch.allclose(read[1], read[0], atol=1e-6)  # padding is not read
    assert not torch.allclose(read[2][-1], read[0][-1]) and torch.allclose(read[2][0], read[0][0])
    # pools that score every word alike are the mean of the words (the sentence feature), padding left out
    with torch.no_grad():
        out = model(**batch)
        head.rank_word_scores.weight.zero_()
        pooled = head.pool_words(out.text_hidden_states, batch["attention_mask"].bool())
    width = out.text_hidden_states.shape[-1]
    assert pooled.shape == (2, RANK_WORD_POOLS * width)
    for pool in range(RANK_WORD_POOLS):
        assert torch.allclose(pooled[:, pool * width : (pool + 1) * width], out.sentence_embedding, atol=1e-6)
    with torch.no_grad():
        head.rank_word_scores.weight.normal_()

    model.train()
    model(**batch, labels=labels_for(batch)).loss.backward()
    assert head.rank_word_scores.weight.grad.abs().sum() > 0 and head.rank_kernel.weight.grad.abs().sum() > 0

    check_rank_option_saves_and_loads(model, batch, tmp_path, "head_rank_words")


def test_sentence_dropout_hides_the_sentence_from_the_head_of_some_training_samples_only():
    model, plain = build("swin", "bert", head_sentence_dropout=0.5), build("swin", "bert")
    read = []
    for head in (model.segmentation_head, plain.segmentation_head):
        head.register_forward_hook(lambda module, args, output: read.append(args[1].detach()))
    batch = inputs()
    batch = {k: v.repeat(16, *([1] * (v.ndim - 1))) for k, v in batch.items()}  # 32 samples
    torch.manual_seed(1)
    output = model.train()(**batch)
    dropped = read[-1].abs().sum(-1) == 0
    assert 0 < int(dropped.sum()) < len(dropped)  # some samples, not all
    assert torch.equal(read[-1][~dropped], output.sentence_embedding[~dropped])  # the others read it unchanged
    assert (output.sentence_embedding[dropped].abs().sum(-1) > 0).all()  # the sentence itself is still computed
    for module in (model.eval(), plain.train()):  # evaluation, and the default in training: every sample reads it
        sentence = module(**batch).sentence_embedding
        assert torch.equal(read[-1], sentence)
    assert ReferringSegmentationConfig.from_dict(
        {k: v for k, v in plain.config.to_dict().items() if k != "head_sentence_dropout"}).head_sentence_dropout == 0
    for bad, kwargs in ((1.0, {}), (-0.1, {}), (0.5, {"head_reads_sentence": False})):
        with pytest.raises(ValueError, match="`head_sentence_dropout` must be in \\[0, 1\\)"):
            ReferringSegmentationConfig(head_sentence_dropout=bad, **kwargs)


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# ----------------------------------------------------------------------------- bad input
def test_unsupported_vision_type_lists_supported():
    with pytest.raises(ValueError, match=r"Unsupported vision backbone model_type 'beit'.*convnext, dinov2"):
        ReferringSegmentationConfig(vision_config={"model_type": "beit"})


def test_unsupported_text_type_lists_supported():
    with pytest.raises(ValueError, match=r"Unsupported text encoder model_type 'gpt2'.*bert, clip_text_model"):
        ReferringSegmentationConfig(text_config={"model_type": "gpt2"})


def test_unsupported_type_in_from_backbones(tmp_path):
    from transformers import GPT2Config, GPT2Model

    GPT2Model(GPT2Config(n_embd=16, n_layer=1, n_head=2, vocab_size=50)).save_pretrained(tmp_path / "gpt2")
    SwinModel(SwinConfig(**tiny_vision_config("swin").to_dict())).save_pretrained(tmp_path / "swin")
    with pytest.raises(ValueError, match="Unsupported text encoder model_type 'gpt2'"):
        ReferringSegmentationModel.from_backbones(str(tmp_path / "swin"), str(tmp_path / "gpt2"))


def test_labels_of_another_size_are_refused():
    model = build()
    batch = inputs()
    with pytest.raises(ValueError, match=r"`labels` must have shape \(2, 1, 64, 64\)"):
        model(**batch, labels=torch.zeros(2, 1, 32, 32))


def test_labels_without_channel_axis_are_accepted():
    model = build()
    batch = inputs()
    assert torch.isfinite(model(**batch, labels=labels_for(batch)[:, 0]).loss)


def test_batch_mismatch_between_images_and_tokens():
    model = build()
    batch = inputs()
    batch["input_ids"] = batch["input_ids"][:1]
    with pytest.raises(ValueError, match="`input_ids` must have shape"):
        model(**batch)


def test_side_times_count_products_let_the_rank_kernel_weigh_one_rank_from_one_side_alone(tmp_path):
    from s4eca_peft.modeling.head import MAX_RANK
    from s4eca_peft.modeling.ranks import RANK_SIDES

    model = build("swin", "bert", head_rank_kernel=True, head_category_map=True, head_rank_product=True).eval()
    head = model.segmentation_head
    batch = inputs()
    model.train()
    model(**batch, labels=labels_for(batch)).loss.backward()
    assert head.rank_sides.weight.grad.abs().sum() > 0 and head.rank_counts.weight.grad.abs().sum() > 0
    check_rank_option_saves_and_loads(model, batch, tmp_path, "head_rank_product")

    with torch.no_grad():  # "the second from the left": a side weight for the left, a count weight for two
        for layer in (head.rank_kernel, head.rank_sides, head.rank_counts):
            layer.weight.zero_()
            layer.bias.zero_()
        head.rank_sides.bias[RANK_SIDES.index("left")] = 2.0
        head.rank_counts.bias[1] = 2.0
        weights = head.rank_weights(torch.randn(2, head.rank_kernel.in_features))
    expected = torch.zeros(len(RANK_SIDES) * MAX_RANK)
    expected[RANK_SIDES.index("left") * MAX_RANK + 1] = 4.0
    assert torch.equal(weights, expected.expand(2, -1))
    candidates = torch.full((2, 1, 6, 12), -5.0)
    for left in (0, 4, 8):  # three objects in a row: only the middle one is second from the left
        candidates[:, :, 2:4, left : left + 2] = 5.0
    ranked = torch.einsum("bchw,bc->bhw", head.rank_terms(candidates), weights)
    assert ranked[0, 2:4, 4:6].eq(4.0).all() and ranked.ne(0).sum() == 2 * 4  # the middle object's 4 cells, nothing else

