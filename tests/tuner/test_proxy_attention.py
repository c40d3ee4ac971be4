"""Pixel-to-proxy attention: what a pixel reads depends on the proxies and on where the pixel is."""

import pytest
import torch

from s4eca_peft.tuner import S4ECAConfig
from s4eca_peft.tuner.checks import config_weight_disagreements
from s4eca_peft.tuner.proxy_attention import PixelProxyAttention
from s4eca_peft.tuner.vision_adapter import S4ECAVisionAdapter


def test_pixels_read_the_proxies_according_to_their_place():
    torch.manual_seed(0)
    attention = PixelProxyAttention(8)
    features = torch.zeros(1, 4, 4, 8)  # every pixel alike: only its place tells them apart
    proxies = torch.randn(1, 3, 8)
    out, weights = attention(features, proxies)
    assert weights.shape == (1, 4, 4, 3)
    assert torch.allclose(weights.sum(-1), torch.ones(1, 4, 4))
    assert not torch.allclose(out[0, 0, 0], out[0, 3, 3])  # corners read different mixtures
    other, _ = attention(features, torch.randn(1, 3, 8))
    assert not torch.allclose(out, other)


def test_the_adapter_builds_it_only_when_asked_and_still_starts_as_the_identity():
    with_it = S4ECAVisionAdapter(16, 12, 8, [3, 3], [1, 2], proxy_attention=True)
    without = S4ECAVisionAdapter(16, 12, 8, [3, 3], [1, 2])
    assert with_it.proxy_attention is not None and without.proxy_attention is None
    update, _ = with_it(torch.randn(2, 4, 4, 16), torch.randn(2, 3, 12))
    assert torch.count_nonzero(update) == 0  # zero-initialised up-projection


def test_the_proxy_attention_alone_reads_the_language():
    config = S4ECAConfig(scale_selection=False, spatial_selection=False, proxy_attention=True)
    assert config.uses_language
    with pytest.raises(ValueError, match="proxy_attention"):
        S4ECAConfig(proxy_attention="yes")


def test_weights_with_proxy_attention_disagree_with_a_config_without_it():
    weights = {
        f"block.s4eca_vision_adapter.{name}.weight": torch.zeros(8, 8)
        for name in ("down", "extractor", "up", "scale_selection", "spatial_selection", "proxy_attention")
    }
    lines = config_weight_disagreements(S4ECAConfig(), weights)
    assert any(line.startswith("proxy_attention") for line in lines)
    assert not any(line.startswith("proxy_attention") for line in
                   config_weight_disagreements(S4ECAConfig(proxy_attention=True), weights))
