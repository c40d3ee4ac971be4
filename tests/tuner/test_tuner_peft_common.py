"""peft's own common test suite, run against S4ECA on tiny models.

peft tests every method with one matrix (`tests/test_custom_models.py`, built on `PeftCommonTester` in
`tests/testing_common.py`). Those files ship in peft's sdist, not in its wheel, so this module downloads the sdist of
the installed peft version with `pip download` (cached in `$S4ECA_PEFT_SDIST_CACHE`, default
`<tmp>/s4eca-peft-sdist`), extracts the three files it needs into a temporary package, replaces their `TEST_CASES`
in place with S4ECA cases on a tiny text+vision composite, and subclasses their test class. Nothing of peft's is
committed here. Without access to the package index the module is skipped, saying so.

Which of peft's tests run:
- every test parametrized over `TEST_CASES` (save/load, adapter names, multiple adapters, disable/enable,
  requires-grad, training, dtypes, deletion, low-CPU-memory loading, direct injection, ...); those that merge
  adapters skip themselves with the reason S4ECA gives (non-linear adapters cannot be merged), as peft does for its
  own non-mergeable methods, and those about options S4ECA does not have (`bias`) skip with peft's reason;
- tests parametrized over `ALL_PEFT_CONFIG_CLASSES` are hard-wired to `DeepMLP` and a `target_modules` argument:
  they are collected for `S4ECAConfig` and skipped with that reason (tests/tuner/test_tuner_model.py covers the same
  ground for S4ECA);
- tests written for one other method or model (LoRA, IA3, GLoRA, DoRA, GPT-2, trainable tokens, ...) are not
  collected.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import os
import subprocess
import sys
import tarfile
import tempfile
import types
from pathlib import Path

import pytest
import torch
from torch import nn

from s4eca_peft import S4ECAConfig

pytestmark = pytest.mark.slow  # peft's whole matrix; collecting it downloads peft's sdist (see conftest.py)

PEFT_VERSION = importlib.metadata.version("peft")
PEFT_TEST_FILES = ("testing_common.py", "testing_utils.py", "test_custom_models.py")


def _peft_sdist() -> Path:
    """The cached sdist; a missing one is downloaded into a folder of its own and moved into place in one rename, so
    that test processes collecting side by side never read a half-written archive."""
    cache = Path(os.environ.get("S4ECA_PEFT_SDIST_CACHE", Path(tempfile.gettempdir()) / "s4eca-peft-sdist"))
    cache.mkdir(parents=True, exist_ok=True)
    sdist = cache / f"peft-{PEFT_VERSION}.tar.gz"
    if not sdist.exists():
        with tempfile.TemporaryDirectory(prefix=".download-", dir=cache) as download:
            command = [sys.executable, "-m", "pip", "download", f"peft=={PEFT_VERSION}", "--no-binary", ":all:"]
            command += ["--no-deps", "--quiet", "--disable-pip-version-check", "-d", download]
            try:
                result = subprocess.run(command, capture_output=True, text=True, timeout=600)
            except (OSError, subprocess.TimeoutExpired) as error:
                pytest.skip(f"pip could not download the peft {PEFT_VERSION} sdist: {error}", allow_module_level=True)
            downloaded = Path(download) / sdist.name
            if result.returncode != 0 or not downloaded.exists():
                reason = (result.stderr.strip().splitlines() or ["no output"])[-1]
                pytest.skip(
                    f"pip could not reach the package index for the peft {PEFT_VERSION} sdist: {reason}",
                    allow_module_level=True,
                )
            os.replace(downloaded, sdist)
    return sdist


def _import_peft_tests() -> types.ModuleType:
    """Extract peft's test files into a temporary package and import `test_custom_models` from it."""
    package_dir = Path(tempfile.mkdtemp(prefix="peft-tests-")) / "peft_upstream_tests"
    package_dir.mkdir()
    (package_dir / "__init__.py").write_text("")
    with tarfile.open(_peft_sdist()) as archive:
        for name in PEFT_TEST_FILES:
            member = archive.extractfile(f"peft-{PEFT_VERSION}/tests/{name}")
            (package_dir / name).write_bytes(member.read())
    sys.path.insert(0, str(package_dir.parent))
    stubbed = False
    try:
        importlib.import_module("diffusers")
    except ImportError:
        # only peft's Stable Diffusion tests use diffusers, and none of them runs here
        stub = types.ModuleType("diffusers")
        stub.StableDiffusionPipeline = None
        sys.modules["diffusers"] = stub
        stubbed = True
    try:
        return importlib.import_module("peft_upstream_tests.test_custom_models")
    finally:
        if stubbed:
            del sys.modules["diffusers"]


upstream = _import_peft_tests()
common = sys.modules["peft_upstream_tests.testing_common"]


# ---------------------------------------------------------------- a tiny composite: text encoder, then vision stack

VOCAB, TEXT_DIM, CHANNELS, LOGIT_SCALE = 50, 16, 8, 20.0


class TinyTextBlock(nn.Module):
    """Self-attention block; gets a 4-D additive mask positionally, as BERT's layers do."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm = nn.LayerNorm(dim)

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        q, k, v = self.qkv(hidden_states).chunk(3, dim=-1)
        scores = q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5
        if attention_mask is not None:
            scores = scores + attention_mask[:, 0]
        return self.norm(hidden_states + self.proj(scores.softmax(-1) @ v))


class TinyVisionBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.act = nn.GELU()

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features + self.act(self.conv(features))


class TinyReferringModel(nn.Module):
    """Text blocks run first (their S4ECA adapters write the proxies), then the vision blocks, then a head that
    returns log-probabilities `(batch, 2)`, the output peft's tests expect."""

    def __init__(self, head_name: str) -> None:
        super().__init__()
        self.head_name = head_name
        self.text_embed = nn.Embedding(VOCAB, TEXT_DIM)
        self.text_layers = nn.ModuleList(TinyTextBlock(TEXT_DIM) for _ in range(2))
        self.vision_stem = nn.Conv2d(3, CHANNELS, 3, stride=2, padding=1)
        self.vision_layers = nn.ModuleList(TinyVisionBlock(CHANNELS) for _ in range(2))
        setattr(self, head_name, nn.Linear(CHANNELS + TEXT_DIM, 2))

    def forward(self, input_ids, pixel_values, attention_mask=None) -> torch.Tensor:
        words = self.text_embed(input_ids)  # (batch, length, TEXT_DIM)
        mask = None
        if attention_mask is not None:
            keep = attention_mask[:, None, None, :].to(words.dtype)
            mask = ((1.0 - keep) * torch.finfo(words.dtype).min).expand(-1, 1, words.shape[1], -1)
        for layer in self.text_layers:
            words = layer(words, mask)
        features = self.vision_stem(pixel_values.to(self.vision_stem.weight.dtype))  # (batch, CHANNELS, h, w)
        for layer in self.vision_layers:
            features = layer(features)
        weights = attention_mask.to(words.dtype).unsqueeze(-1) if attention_mask is not None else None
        sentence = words.mean(1) if weights is None else (words * weights).sum(1) / weights.sum(1)
        pooled = torch.cat([features.mean((2, 3)), sentence], dim=-1)
        # sharp logits, so that peft's few SGD steps move every adapter parameter measurably (peft's own MLP gets the
        # same effect from inputs of up to 89)
        return torch.log_softmax(LOGIT_SCALE * getattr(self, self.head_name)(pooled), dim=-1)


class TinyModels:
    """Stands in for a transformers class: `from_pretrained(model_id)` builds a seeded tiny model."""

    @classmethod
    def from_pretrained(cls, model_id: str, dtype: torch.dtype | None = None) -> TinyReferringModel:
        torch.manual_seed(0)
        head = {"S4ECATinyWithHead": "segmentation_head", "S4ECATiny": "classifier"}[model_id]
        return TinyReferringModel(head).to(dtype or torch.float32)


TARGETS = {"text_target_modules": ["text_layers.1"], "vision_target_modules": r"vision_layers\.\d+"}
SMALL = {"num_queries": 3, "text_bottleneck_size": 8, "text_num_heads": 2, "vision_bottleneck_size": 4}
S4ECA_CASES = [
    (
        "S4ECA with the head as modules_to_save",
        "S4ECATinyWithHead",
        S4ECAConfig,
        {**TARGETS, **SMALL, "modules_to_save": ["segmentation_head"]},
    ),
    (
        "S4ECA two branches, scale selection only",
        "S4ECATiny",
        S4ECAConfig,
        {
            **TARGETS,
            **SMALL,
            "spatial_selection": False,
            "extractor_kernel_sizes": [3, 5],
            "extractor_dilations": [1, 1],
        },
    ),
]

upstream.TEST_CASES[:] = S4ECA_CASES
upstream.ALL_PEFT_CONFIG_CLASSES[:] = [S4ECAConfig]


def _skip_if_merging_not_supported(model_id, config_cls, config_kwargs):
    if issubclass(config_cls, S4ECAConfig):
        pytest.skip("S4ECA adapters are non-linear and cannot be merged (merge_and_unload raises a ValueError).")
    return _peft_skip_if_merging_not_supported(model_id, config_cls, config_kwargs)


_peft_skip_if_merging_not_supported = common._skip_if_merging_not_supported
upstream._skip_if_merging_not_supported = common._skip_if_merging_not_supported = _skip_if_merging_not_supported

NOT_APPLICABLE_CONFIG_CLASS_TESTS = (
    "hard-wired to peft's DeepMLP/MLP and a `target_modules` argument, which S4ECA replaces by text and vision "
    "targets; tests/tuner/test_tuner_model.py covers requires-grad, set_adapter and modules_to_save for S4ECA"
)


def _parametrized_over(function, values) -> bool:
    return any(mark.name == "parametrize" and mark.args[1] is values for mark in getattr(function, "pytestmark", []))


def _skipped(function, reason: str):
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        return function(*args, **kwargs)

    return pytest.mark.skip(reason=reason)(wrapper)


def _select_tests(cls: type) -> type:
    """Keep peft's matrix tests, mark the config-class tests as skipped, leave out tests of other methods."""
    for name in dir(upstream.TestPeftCustomModel):
        if not name.startswith("test_"):
            continue
        function = getattr(upstream.TestPeftCustomModel, name)
        if _parametrized_over(function, upstream.TEST_CASES):
            continue
        if _parametrized_over(function, upstream.ALL_PEFT_CONFIG_CLASSES):
            setattr(cls, name, _skipped(function, NOT_APPLICABLE_CONFIG_CLASS_TESTS))
        else:
            setattr(cls, name, None)  # written for another method or model: not collected
    return cls



@_select_tests
class TestS4ECAPeftCommon(upstream.TestPeftCustomModel):
    transformers_class = TinyModels

    def prepare_inputs_for_testing(self) -> dict[str, torch.Tensor]:
        generator = torch.Generator().manual_seed(0)
        attention_mask = torch.ones(4, 6, dtype=torch.long)
        attention_mask[-1, 4:] = 0
        return {
            "input_ids": torch.randint(0, VOCAB, (4, 6), generator=generator).to(self.torch_device),
            "pixel_values": torch.randn(4, 3, 16, 16, generator=generator).to(self.torch_device),
            "attention_mask": attention_mask.to(self.torch_device),
        }
