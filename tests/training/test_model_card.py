"""The adapter model card: front matter the Hub parses, per-split metrics, usage snippet."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from card_info import METRIC_KEYS, TEST, VAL, make_info
from huggingface_hub import ModelCard, ModelCardData

from s4eca_peft.training.model_card import render_model_card

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_front_matter_parses_as_peft_card():
    card = ModelCard(render_model_card(make_info()))
    assert isinstance(card.data, ModelCardData)
    data = card.data
    assert data.library_name == "peft"
    assert data.pipeline_tag == "image-segmentation"
    assert data.license == "apache-2.0"
    assert set(data.tags) == {"s4eca", "peft", "referring-image-segmentation", "remote-sensing", "rrsis"}
    assert data.base_model == ["microsoft/swin-base-patch4-window12-384", "google-bert/bert-base-uncased"]
    assert data.datasets == ["rrsisd"]
    # survives a round trip through ModelCardData, as huggingface_hub writes it
    again = ModelCardData(**data.to_dict())
    assert again.library_name == "peft" and len(again.eval_results) == 2 * len(METRIC_KEYS)


def test_model_index_has_every_metric_per_named_split():
    data = ModelCard(render_model_card(make_info())).data
    assert data.model_name == "someone/s4eca-swin-bert-rrsisd"
    found = {(r.dataset_split, r.metric_type): r for r in data.eval_results}
    assert set(found) == {(split, key) for split in ("val", "test") for key in METRIC_KEYS}
    for split, metrics in (("val", VAL), ("test", TEST)):
        for key in METRIC_KEYS:
            result = found[(split, key)]
            assert result.metric_value == pytest.approx(metrics[key], abs=5e-5)
            assert 0 <= result.metric_value <= 1  # fractions, as rrsis_metrics returns them
            assert result.task_type == "image-segmentation"
            assert result.dataset_type == "rrsisd" and result.dataset_name == "RRSIS-D"


def test_body_reports_what_was_measured():
    text = render_model_card(make_info())
    body = ModelCard(text).text
    header = next(line for line in body.splitlines() if line.startswith("| Split |"))
    rows = [line for line in body.splitlines() if line.startswith(("| val |", "| test |"))]
    assert len(rows) == 2 and rows[0].startswith("| val | 1740 |") and rows[1].startswith("| test | 3481 |")
    cells = dict(zip(header.split("|"), rows[0].split("|")))
    assert cells[" mIoU (%) "].strip() == "66.12"
    assert "split(s) `val`, `test`" in body and "480 × 480" in body
    assert "fractions in [0, 1]" in body
    assert "1x NVIDIA H100 80GB" in body and "2 h 03 min 15 s" in body and "| Seed | 42 |" in body
    assert "accelerate launch examples/train.py --dataset rrsisd --image_size 480 --seed 42" in body
    assert '"num_queries": 8' in body
    assert "18.9 MB (18,874,368 bytes)" in body
    assert "$" not in text  # every placeholder filled
    assert "split / family" not in body  # real datasets without families: no family rows
    assert "reference-adapter" not in body  # it knows the synthetic scenes only


def test_per_family_rows_follow_each_splits_overall_row():
    anchor = VAL | {"mIoU": 0.25, "num_samples": 1000}
    info = make_info(dataset="synthetic", metrics_per_split={
        "val": VAL | {"per_family": {"anchor": anchor, "colour": VAL | {"num_samples": 740}}}, "test": TEST})
    body = ModelCard(render_model_card(info)).text
    rows = [line.split("|")[1].strip() for line in body.splitlines() if line.startswith("| val") or
            line.startswith("| test")]
    assert rows == ["val", "val / anchor", "val / colour", "test"]
    assert "| val / anchor | 1000 |" in body and "25.00" in body and "split / family" in body
    assert "package:s4eca-peft/reference-adapter" in body  # a run on the synthetic scenes points to the longer one


def test_usage_snippet_imports_s4eca_peft_first():
    body = ModelCard(render_model_card(make_info())).text
    snippet = re.search(r"```python\n(.*?)```", body, flags=re.S).group(1)
    lines = [line for line in snippet.splitlines() if line.strip()]
    assert lines[0].startswith("import s4eca_peft")
    assert "from s4eca_peft import S4ECASegmenter" in snippet
    assert 'seg = S4ECASegmenter.from_pretrained("someone/s4eca-swin-bert-rrsisd")' in snippet
    assert 'masks = seg.predict(image, "the white storage tank left of the road")' in snippet
    assert "`import s4eca_peft` is required before" in body and "`PeftModel.from_pretrained`" in body


@pytest.mark.parametrize(
    ("trainable", "total", "expected"),
    [
        (4_712_345, 201_112_233, "4,712,345 of 201,112,233 in total (2.34 %)"),
        (12, 10_000_000, "(< 0.01 %)"),
        (0, 10, "(0 %)"),
        (10, 10, "(100.00 %)"),
    ],
)
def test_trainable_percentage(trainable, total, expected):
    info = make_info(trainable_params=trainable, total_params=total)
    assert info.trainable_percent == pytest.approx(100 * trainable / total)
    assert expected in render_model_card(info)


def test_built_from_config_and_local_backbones_stay_out_of_base_model():
    info = make_info(vision_model=None, text_model="/data/models/minilm", dataset="synthetic", metrics_per_split={})
    text = render_model_card(info)
    data = ModelCard(text).data
    assert data.library_name == "peft"
    assert data.base_model is None and data.eval_results is None
    assert "Vision backbone: built from a config" in text and "`/data/models/minilm` (local weights)" in text
    assert "This run was not evaluated" in text
    named = render_model_card(make_info(vision_model="built from config"))
    assert ModelCard(named).data.base_model == ["google-bert/bert-base-uncased"]


def test_invalid_inputs_name_the_field():
    with pytest.raises(ValueError, match=r"metrics_per_split\['test'\]\['mIoU'\].*fraction"):
        make_info(metrics_per_split={"test": TEST | {"mIoU": 64.44}})
    with pytest.raises(ValueError, match=r"lacks \['oIoU'\]"):
        make_info(metrics_per_split={"test": {k: v for k, v in TEST.items() if k != "oIoU"}})
    with pytest.raises(ValueError, match="trainable_params"):
        make_info(trainable_params=10, total_params=5)
    with pytest.raises(ValueError, match=r"unknown placeholder \$gpu"):
        render_model_card(make_info(), template="$model_id on $gpu")


def test_base_models_are_adapted_and_the_widget_names_image_and_expression(tmp_path):
    from PIL import Image

    from s4eca_peft.training.run_card import write_widget_example

    path, expression = write_widget_example(tmp_path, image_size=64)
    assert Image.open(tmp_path / path).size == (64, 64) and expression
    data = ModelCard(render_model_card(make_info(widget_image=path, widget_expression=expression))).data
    assert data.base_model_relation == "adapter"
    assert data.pipeline_tag == "image-segmentation"
    assert data.widget == [{
        "src": f"https://huggingface.co/someone/s4eca-swin-bert-rrsisd/resolve/main/{path}",
        "text": expression,
        "example_title": expression,
    }]
    bare = ModelCard(render_model_card(make_info(vision_model=None, text_model=None))).data
    assert bare.base_model is None and not hasattr(bare, "base_model_relation") and not hasattr(bare, "widget")
    with pytest.raises(ValueError, match="`widget_image` and `widget_expression` go together"):
        make_info(widget_image=path)


def test_type_information_ships_with_the_package():
    import tomllib

    assert (REPO_ROOT / "s4eca_peft" / "py.typed").is_file()
    package_data = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert "py.typed" in package_data["s4eca_peft"]
