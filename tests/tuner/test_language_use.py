"""Language use: each image's vision adapters are given the proxies of another image's expression
(`s4eca_peft.tuner.mismatch_proxies`, used by `measure_language_use`, ``s4eca-eval --language_use``, tests/test_learning.py
and benchmarks/). It leaves the output of adapters that do not read their proxies exactly as it was and changes that of
adapters that do, so the gap it measures comes from the adapters' use of the language alone."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import torch
from peft import get_peft_model
from tiny_configs import IMAGE_SIZE, VOCAB_SIZE, tiny_text_config, tiny_vision_config
from tiny_models import build_tiny_adapter, tiny_tokenizer

from s4eca_peft import ReferringSegmentationConfig, ReferringSegmentationModel, S4ECAConfig
from s4eca_peft.data.loaders import eval_dataloader
from s4eca_peft.data.synthetic import make_synthetic_dataset
from s4eca_peft.modeling import ReferringSegmentationProcessor
from s4eca_peft.training.evaluation import eval_main, evaluate_loop, measure_language_use
from s4eca_peft.tuner import S4ECAModel, S4ECATextLayer, mismatch_proxies

TINY = {"num_queries": 4, "text_bottleneck_size": 16, "text_num_heads": 2, "vision_bottleneck_size": 8}


def adapted_model(reads_proxies: bool):
    """A tiny Swin + BERT whose head reads no sentence, with S4ECA adapters (random up-projections, so that they
    change the features) that read their proxies or, with both selections off, do not."""
    torch.manual_seed(0)
    config = ReferringSegmentationConfig(vision_config=tiny_vision_config("swin"), text_config=tiny_text_config("bert"),
                                         decoder_dim=16, head_reads_sentence=False)
    s4eca = S4ECAConfig(**TINY, init_weights=False, scale_selection=reads_proxies, spatial_selection=reads_proxies)
    return get_peft_model(ReferringSegmentationModel(config), s4eca).eval()


def batch() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return {"pixel_values": torch.randn(3, 3, IMAGE_SIZE, IMAGE_SIZE, generator=generator),
            "input_ids": torch.randint(3, VOCAB_SIZE, (3, 6), generator=generator),
            "attention_mask": torch.ones(3, 6, dtype=torch.long)}


@pytest.mark.parametrize("reads_proxies", [True, False], ids=["adapters-read-proxies", "adapters-ignore-proxies"])
def test_mismatched_proxies_change_the_mask_exactly_when_the_adapters_read_them(reads_proxies):
    model, inputs = adapted_model(reads_proxies), batch()
    with torch.no_grad():
        matched = model(**inputs).logits
        with mismatch_proxies(model):
            mismatched = model(**inputs).logits
        again = model(**inputs).logits
    assert torch.equal(again, matched)  # removing the hook restores each image's own proxies
    if reads_proxies:
        assert (mismatched - matched).abs().amax() > 1e-5  # the head starts near a constant prior
    else:
        assert torch.equal(mismatched, matched)


def test_with_a_head_that_reads_no_sentence_adapters_that_ignore_their_proxies_ignore_the_expression():
    model, inputs = adapted_model(reads_proxies=False), batch()
    with torch.no_grad():
        other_expressions = model(**dict(inputs, input_ids=inputs["input_ids"].flip(0))).logits
        assert torch.equal(other_expressions, model(**inputs).logits)


def test_with_a_head_that_reads_no_sentence_the_loss_trains_the_text_adapters_through_the_vision_adapters():
    """The training-time half of language use: with a head that reads no sentence, the loss reaches the text
    adapters' queries and attention (which distil the proxies) only through the vision adapters that read the
    proxies, so trained vision adapters can come to carry the language. (The text feedback, which feeds later text
    layers that nothing reads here, gets no gradient.)"""
    model, inputs = adapted_model(reads_proxies=True).train(), batch()
    model(**inputs, labels=torch.ones(3, 1, IMAGE_SIZE, IMAGE_SIZE)).loss.backward()
    adapters = [m.s4eca_text_adapter["default"] for m in model.modules() if isinstance(m, S4ECATextLayer)]
    assert adapters, "the model has no text adapters"
    grads = {name: p.grad for adapter in adapters for name, p in adapter.named_parameters()
             if not name.startswith("feedback.")}
    assert {"queries", "q_proj.weight", "v_proj.weight", "out_proj.weight"} <= set(grads)
    assert all(g is not None and g.abs().sum() > 0 for g in grads.values()), sorted(grads)


@pytest.fixture(scope="module")
def val_loader():
    """Twelve version-2 scenes (each with its family) in batches of 4, through the tiny models' processor."""
    processor = ReferringSegmentationProcessor(tiny_tokenizer(), image_size=IMAGE_SIZE, max_length=12)
    dataset = make_synthetic_dataset(12, image_size=IMAGE_SIZE, seed=5)
    return eval_dataloader(dataset, processor, batch_size=4), Counter(dataset["family"])


def test_evaluation_scores_each_family_next_to_the_whole_split(val_loader):
    loader, families = val_loader
    scores = evaluate_loop(adapted_model(reads_proxies=True), loader)
    assert {family: s["num_samples"] for family, s in scores["per_family"].items()} == dict(sorted(families.items()))
    assert scores["num_samples"] == 12 and len(families) > 2


def test_adapters_that_ignore_their_proxies_use_exactly_no_language(val_loader):
    loader, families = val_loader
    use = measure_language_use(adapted_model(reads_proxies=False), loader)
    assert use["mIoU_drop"] == 0.0 and use["oIoU_drop"] == 0.0
    assert use["per_family_mIoU_drop"] == {family: 0.0 for family in sorted(families)}
    assert use["mismatched"]["num_samples"] == 12 and set(use["mismatched"]["per_family"]) == set(families)


def test_adapters_that_read_their_proxies_are_scored_with_swapped_proxies_during_the_measurement_only(
        val_loader, monkeypatch):
    loader, _ = val_loader
    model = adapted_model(reads_proxies=True)
    swaps = []
    set_proxies = S4ECAModel.set_language_proxies
    monkeypatch.setattr(S4ECAModel, "set_language_proxies", lambda self, proxies, name=None: (
        swaps.append(proxies.shape[0]), set_proxies(self, proxies, name)))
    matched = evaluate_loop(model, loader)
    use = measure_language_use(model, loader, matched=matched)
    assert swaps == [4, 4, 4]  # one swap per batch, all three batches of four
    assert use["mIoU_drop"] == matched["mIoU"] - use["mismatched"]["mIoU"]
    assert evaluate_loop(model, loader) == matched and len(swaps) == 3  # the hooks ended with the measurement
    with pytest.raises(TypeError, match="must carry S4ECA adapters"):
        mismatch_proxies(torch.nn.Linear(2, 2))


def test_s4eca_eval_reports_language_use_overall_and_per_family(tmp_path, capsys):
    adapter = build_tiny_adapter(tmp_path / "adapter")
    report = tmp_path / "scores.json"
    result = eval_main(["--adapter", str(adapter), "--split", "val", "--num_samples", "6", "--batch_size", "3",
                        "--language_use", "--output", str(report)])
    written = json.loads(report.read_text())
    assert written == json.loads(json.dumps(result)) and written["data_version"] == 2
    use = written["language_use"]
    assert set(use) == {"mIoU_drop", "oIoU_drop", "mismatched", "per_family_mIoU_drop"}
    assert use["mIoU_drop"] == pytest.approx(written["mIoU"] - use["mismatched"]["mIoU"])
    assert set(use["per_family_mIoU_drop"]) == set(written["per_family"]) == set(use["mismatched"]["per_family"])
    printed = capsys.readouterr().out
    assert "Language use" in printed and "| mismatched proxies |" in printed and "| val / " in printed
    with pytest.raises(SystemExit):
        eval_main(["--adapter", str(adapter), "--language_use", "--batch_size", "1"])
