"""The vision adapter's modules against a direct transcription of the method's formulas.

The modules are written for few operators (one layout change for all branches, one multiply-add per branch, the
pixel norm divided out of the best match); these tests hold them to the plain formulas: same outputs and gradients
within float32 tolerance, and the same parameters (names and shapes), so saved adapters load unchanged.
"""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from s4eca_peft.tuner.vision_adapter import S4ECAVisionAdapter

SWITCHES = [(True, True), (True, False), (False, True), (False, False)]
EXPECTED_SHAPES = {
    "down.weight": (8, 16), "down.bias": (8,),
    "extractor.branches.0.weight": (8, 1, 3, 3), "extractor.branches.0.bias": (8,),
    "extractor.branches.1.weight": (8, 1, 5, 5), "extractor.branches.1.bias": (8,),
    "extractor.branches.2.weight": (8, 1, 3, 3), "extractor.branches.2.bias": (8,),
    "proxy_proj.weight": (8, 32), "proxy_proj.bias": (8,),
    "scale_selection.to_logits.weight": (24, 8), "scale_selection.to_logits.bias": (24,),
    "spatial_selection.temperature": (), "spatial_selection.bias": (), "spatial_selection.pixel_proj.weight": (8, 8),
    "spatial_selection.pixel_proj.bias": (8,),
    "up.weight": (16, 8), "up.bias": (16,),
}


def reference(adapter: S4ECAVisionAdapter, features: torch.Tensor, proxies: torch.Tensor):
    """The adapter as the method describes it, one step per line, channels-last throughout."""
    x = F.gelu(adapter.down(features))
    branches, dense_input = [], x
    for conv in adapter.extractor.branches:
        out = F.gelu(conv(dense_input.permute(0, 3, 1, 2))).permute(0, 2, 3, 1)
        branches.append(out)
        dense_input = dense_input + out
    batch, height, width, r = x.shape
    projected = adapter.proxy_proj(proxies) if adapter.proxy_proj is not None else None
    if adapter.scale_selection is not None:
        logits = adapter.scale_selection.to_logits(projected.mean(dim=1)).view(batch, len(branches), r)
        weights = logits.softmax(dim=1)
        x = sum(branch * weights[:, i, None, None, :] for i, branch in enumerate(branches))
    else:
        weights = torch.full((batch, len(branches), r), 1 / len(branches))
        x = sum(branches) / len(branches)
    if adapter.spatial_selection is not None:
        spatial = adapter.spatial_selection
        pixels = F.normalize(spatial.pixel_proj(x), dim=-1).reshape(batch, height * width, r)
        similarity = torch.bmm(pixels, F.normalize(projected, dim=-1).transpose(1, 2))
        gate = torch.sigmoid(spatial.temperature * similarity.amax(-1).view(batch, height, width, 1) + spatial.bias)
        x = x * gate
    else:
        gate = torch.ones(batch, height, width, 1)
    return adapter.up(x), weights, gate.permute(0, 3, 1, 2)


def make_adapter(scale: bool, spatial: bool) -> S4ECAVisionAdapter:
    torch.manual_seed(0)
    adapter = S4ECAVisionAdapter(16, 32, 8, [3, 5, 3], [1, 1, 2], scale_selection=scale, spatial_selection=spatial,
                                 init_weights=False)
    with torch.no_grad():  # a gate away from saturation, so that its gradient is tested too
        if adapter.spatial_selection is not None:
            adapter.spatial_selection.temperature.fill_(1.5)
    return adapter


def gradients(adapter, outputs, inputs):
    grad_seed = torch.randn(outputs.shape, generator=torch.Generator().manual_seed(3))
    named = [(n, p) for n, p in adapter.named_parameters()] + [(f"input{i}", t) for i, t in enumerate(inputs)]
    grads = torch.autograd.grad((outputs * grad_seed).sum(), [t for _, t in named], allow_unused=True)
    return {name: grad for (name, _), grad in zip(named, grads)}


@pytest.mark.parametrize("scale, spatial", SWITCHES)
def test_outputs_and_gradients_equal_the_formulas(scale, spatial):
    adapter = make_adapter(scale, spatial)
    generator = torch.Generator().manual_seed(1)
    features = torch.randn(2, 6, 5, 16, generator=generator, requires_grad=True)
    proxies = torch.randn(2, 4, 32, generator=generator, requires_grad=True)

    delta, maps = adapter(features, proxies)
    expected, weights, gate = reference(adapter, features, proxies)
    torch.testing.assert_close(delta, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(maps["scale_weights"], weights, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(maps["spatial_gate"], gate, rtol=1e-5, atol=1e-6)
    assert maps["spatial_gate"].shape == (2, 1, 6, 5) and maps["scale_weights"].shape == (2, 3, 8)
    assert delta.abs().max() > 1e-3  # the comparison is not between two zeros

    got = gradients(adapter, delta, (features, proxies))
    want = gradients(adapter, expected, (features, proxies))
    assert got.keys() == want.keys()
    for name in got:
        if want[name] is None:
            assert got[name] is None, name
            continue
        assert want[name].abs().max() > 0 or name.startswith("input1"), name
        torch.testing.assert_close(got[name], want[name], rtol=1e-4, atol=1e-6, msg=lambda m, n=name: f"{n}: {m}")


def test_pixels_with_a_vanishing_projection_match_normalize():
    """Where a pixel's projection is below `F.normalize`'s eps, its norm is clamped; the division of the best match
    clamps it alike."""
    adapter = make_adapter(True, True)
    with torch.no_grad():
        adapter.spatial_selection.pixel_proj.weight.zero_()
        adapter.spatial_selection.pixel_proj.bias.fill_(1e-13)  # norm 2.8e-13 < eps
    features, proxies = torch.randn(1, 3, 3, 16), torch.randn(1, 4, 32)
    delta, maps = adapter(features, proxies)
    expected, _, gate = reference(adapter, features, proxies)
    assert torch.isfinite(delta).all()
    torch.testing.assert_close(maps["spatial_gate"], gate)
    torch.testing.assert_close(delta, expected, rtol=1e-5, atol=1e-6)


def test_parameters_keep_their_names_and_shapes():
    """Saved adapters stay loadable: the refactored modules own exactly the parameters they always had."""
    state = make_adapter(True, True).state_dict()
    assert {k: tuple(v.shape) for k, v in state.items()} == EXPECTED_SHAPES
