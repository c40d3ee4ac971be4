"""The language-use measurement of tests/test_learning.py and benchmarks/: each image's vision adapters are given the
proxies of another image's expression (`accuracy_synthetic.mismatch_proxies`). It leaves the output of adapters that
do not read their proxies exactly as it was and changes that of adapters that do, so the gap it measures comes from
the adapters' use of the language alone."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from peft import get_peft_model
from tiny_configs import IMAGE_SIZE, VOCAB_SIZE, tiny_text_config, tiny_vision_config

from s4eca_peft import ReferringSegmentationConfig, ReferringSegmentationModel, S4ECAConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from accuracy_synthetic import mismatch_proxies  # noqa: E402

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
        handle = mismatch_proxies(model)
        mismatched = model(**inputs).logits
        handle.remove()
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
