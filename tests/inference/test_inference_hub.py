"""Loading an adapter from a folder, a pre-filled Hub cache (offline) and a loopback fake Hub; every loading error."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
from fake_hub import write_hub_cache
from huggingface_hub import constants
from tiny_models import build_tiny_adapter

from s4eca_peft.inference import AdapterBackboneMismatchError, S4ECASegmenter

IMAGES = [np.random.default_rng(i).integers(0, 255, size, dtype=np.uint8) for i, size in enumerate(
    [(57, 90, 3), (120, 41, 3), (33, 70)]
)]
EXPRESSIONS = ["the white storage tank", "the car on the left", "the road"]


@pytest.fixture(scope="module")
def adapters(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("adapters")
    return {"v1": build_tiny_adapter(root / "v1", seed=0), "v2": build_tiny_adapter(root / "v2", seed=1)}


@pytest.fixture(scope="module")
def reference(adapters) -> list[np.ndarray]:
    """Probabilities of the v1 adapter loaded from its folder."""
    segmenter = S4ECASegmenter.from_pretrained(adapters["v1"], device="cpu")
    return [p.probabilities for p in segmenter.predict(IMAGES, EXPRESSIONS, return_probabilities=True)]


def check_predictions(segmenter: S4ECASegmenter, reference: list[np.ndarray]) -> None:
    predictions = segmenter.predict(IMAGES, EXPRESSIONS, return_probabilities=True)
    for prediction, image, expected in zip(predictions, IMAGES, reference):
        assert prediction.mask.shape == image.shape[:2]  # the original, non-square size
        np.testing.assert_allclose(prediction.probabilities, expected, atol=1e-5)


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)


# ----------------------------------------------------------------------------- sources
def test_prefilled_cache_offline(adapters, reference, tmp_path, offline):
    commit = write_hub_cache(tmp_path, "owner/s4eca-tiny", adapters["v1"])
    by_branch = S4ECASegmenter.from_pretrained("owner/s4eca-tiny", device="cpu", cache_dir=tmp_path)
    check_predictions(by_branch, reference)
    pinned = S4ECASegmenter.from_pretrained("owner/s4eca-tiny", revision=commit, device="cpu", cache_dir=tmp_path)
    check_predictions(pinned, reference)


def test_prefilled_cache_offline_unknown_revision(adapters, tmp_path, offline):
    write_hub_cache(tmp_path, "owner/s4eca-tiny", adapters["v1"])
    with pytest.raises(ValueError, match=r"Hub repo 'owner/s4eca-tiny' at revision 'v2'"):
        S4ECASegmenter.from_pretrained("owner/s4eca-tiny", revision="v2", device="cpu", cache_dir=tmp_path)


def test_fake_hub_pinned_revision(adapters, reference, tmp_path, fake_hub):
    first = fake_hub.add_repo("owner/s4eca-tiny", adapters["v1"])
    second = fake_hub.add_repo("owner/s4eca-tiny", adapters["v2"])  # main moves on
    pinned = S4ECASegmenter.from_pretrained("owner/s4eca-tiny", revision=first, device="cpu", cache_dir=tmp_path)
    check_predictions(pinned, reference)
    files = [path for method, path in fake_hub.requests if "/resolve/" in path]
    assert files and all(f"/resolve/{first}/" in path for path in files)
    assert any(path.endswith("/adapter_model.safetensors") for path in files)

    latest = S4ECASegmenter.from_pretrained("owner/s4eca-tiny", device="cpu", cache_dir=tmp_path)
    assert any(f"/resolve/{second}/" in path for _, path in fake_hub.requests)
    probabilities = latest.predict(IMAGES[0], EXPRESSIONS[0], return_probabilities=True).probabilities
    assert not np.allclose(probabilities, reference[0], atol=1e-4)


def test_fake_hub_unknown_revision_and_repo(adapters, tmp_path, fake_hub):
    fake_hub.add_repo("owner/s4eca-tiny", adapters["v1"])
    with pytest.raises(ValueError, match=r"Revision 'v9' does not exist in Hub repo 'owner/s4eca-tiny'"):
        S4ECASegmenter.from_pretrained("owner/s4eca-tiny", revision="v9", cache_dir=tmp_path)
    with pytest.raises(ValueError, match=r"Hub repo 'owner/missing' was not found"):
        S4ECASegmenter.from_pretrained("owner/missing", cache_dir=tmp_path)


# ----------------------------------------------------------------------------- bad files
class _RunsCodeWhenUnpickled:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (self.marker,)


def copy_adapter(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


@pytest.mark.parametrize("pickle_name", ["adapter_model.bin", "model.pt"])
def test_pickle_checkpoint_is_refused_and_never_unpickled(adapters, tmp_path, pickle_name):
    folder = copy_adapter(adapters["v1"], tmp_path / "pickled")
    (folder / "adapter_model.safetensors").unlink()
    marker = tmp_path / "unpickled"
    (folder / pickle_name).write_bytes(pickle.dumps(_RunsCodeWhenUnpickled(marker)))
    with pytest.raises(ValueError, match=rf"only pickle weights \({pickle_name}\).*never loaded.*safetensors"):
        S4ECASegmenter.from_pretrained(folder, device="cpu")
    assert not marker.exists()


@pytest.mark.parametrize("damage", ["truncated", "corrupted"])
@pytest.mark.parametrize("file", ["adapter_model.safetensors", "s4eca_base/model.safetensors"])
def test_damaged_safetensors_are_named(adapters, tmp_path, damage, file):
    folder = copy_adapter(adapters["v1"], tmp_path / "damaged")
    path = folder / file
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"\x13\x37" * 40 + data[80:])
    with pytest.raises(ValueError, match=rf"{file}' is not a readable safetensors file"):
        S4ECASegmenter.from_pretrained(folder, device="cpu")


@pytest.mark.parametrize(
    "other", [{"vision": {"embed_dim": 24}}, {"text": {"hidden_size": 48}}], ids=["other-vision", "other-text"]
)
def test_adapter_trained_on_other_backbones(adapters, tmp_path, other):
    folder = copy_adapter(adapters["v1"], tmp_path / "mixed")
    other_folder = build_tiny_adapter(tmp_path / "other", **other)
    shutil.rmtree(folder / "s4eca_base")
    shutil.copytree(other_folder / "s4eca_base", folder / "s4eca_base")  # base of another backbone
    expected = r"'.*mixed' \(adapter_model.safetensors\) does not fit .* trained on other backbones"
    with pytest.raises(AdapterBackboneMismatchError, match=expected):
        S4ECASegmenter.from_pretrained(folder, device="cpu")


def test_not_an_adapter_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="adapter_config.json"):
        S4ECASegmenter.from_pretrained(tmp_path, device="cpu")


def test_the_tuner_load_check_names_the_folder_when_no_architecture_is_recorded(adapters, tmp_path):
    folder = copy_adapter(adapters["v1"], tmp_path / "unrecorded")
    other_folder = build_tiny_adapter(tmp_path / "other", vision={"embed_dim": 24})
    shutil.rmtree(folder / "s4eca_base")
    shutil.copytree(other_folder / "s4eca_base", folder / "s4eca_base")
    metadata_file = folder / "s4eca_metadata.json"
    metadata = json.loads(metadata_file.read_text())
    del metadata["backbone_architecture"]  # only the tuner's own shape checks can tell
    metadata_file.write_text(json.dumps(metadata))
    expected = r"'.*unrecorded' \(adapter_model.safetensors\) does not fit .*vision a swin built from a config.*differ in shape"
    with pytest.raises(AdapterBackboneMismatchError, match=expected):
        S4ECASegmenter.from_pretrained(folder, device="cpu")
