"""Language proxies belong to one forward of one thread: never reused by a later call, never shared between threads,
never broadcast unless set explicitly; DataParallel replicas are refused."""

from __future__ import annotations

import threading
from collections import OrderedDict

import pytest
import torch
from peft import get_peft_model
from tiny_configs import IMAGE_SIZE, VOCAB_SIZE, tiny_text_config, tiny_vision_config
from torch import nn

from s4eca_peft import ReferringSegmentationConfig, ReferringSegmentationModel, S4ECAConfig

TINY = {"num_queries": 4, "text_bottleneck_size": 16, "text_num_heads": 2, "vision_bottleneck_size": 8}


@pytest.fixture(scope="module")
def model():
    """A tiny Swin + BERT model with trained-looking (random, non-zero) adapters, shared read-only by the tests."""
    torch.manual_seed(0)
    config = ReferringSegmentationConfig(
        vision_config=tiny_vision_config("swin"), text_config=tiny_text_config("bert"), decoder_dim=16
    )
    peft_model = get_peft_model(ReferringSegmentationModel(config), S4ECAConfig(**TINY, init_weights=False))
    with torch.no_grad():
        for name, parameter in peft_model.named_parameters():
            if ".s4eca_" in name and name.endswith("weight"):
                parameter.normal_(std=0.2)  # zero-initialised maps too: the text must change the masks
    return peft_model.eval()


def inputs(expression: int, batch: int = 1, image: int = 0) -> dict[str, torch.Tensor]:
    """Image number `image` (repeated `batch` times) with expression number `expression`."""
    pixels = torch.randn(1, 3, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(image))
    ids = torch.randint(3, VOCAB_SIZE, (1, 6), generator=torch.Generator().manual_seed(100 + expression))
    return {
        "pixel_values": pixels.expand(batch, -1, -1, -1).contiguous(),
        "input_ids": ids.expand(batch, -1).contiguous(),
        "attention_mask": torch.ones(batch, 6, dtype=torch.long),
    }


@torch.no_grad()
def logits(model, expression: int, batch: int = 1, image: int = 0) -> torch.Tensor:
    return model(**inputs(expression, batch, image)).logits


@torch.no_grad()
def vision_features(model, pixel_values: torch.Tensor) -> torch.Tensor:
    return model.get_base_model().vision_model(pixel_values)[-1]


def test_the_expression_changes_the_mask(model):
    assert (logits(model, 0) - logits(model, 1)).abs().max() > 1e-3  # else the tests below could not fail


def test_a_vision_only_call_after_a_full_forward_is_refused(model):
    logits(model, 0)
    with pytest.raises(RuntimeError, match="found no language proxies for this forward") as error:
        vision_features(model, inputs(0)["pixel_values"])
    assert "never reused" in str(error.value) and "set_language_proxies" in str(error.value)


def test_explicit_proxies_belong_to_the_next_forward_only(model):
    pixel_values = inputs(0)["pixel_values"]
    proxies = torch.randn(1, 4, 32)
    model.set_language_proxies(proxies)
    first = vision_features(model, pixel_values)
    with pytest.raises(RuntimeError, match="found no language proxies"):
        vision_features(model, pixel_values)  # consumed by the first call
    model.set_language_proxies(proxies)
    torch.testing.assert_close(vision_features(model, pixel_values), first, rtol=0, atol=0)


def test_a_batch_1_leftover_is_never_broadcast(model):
    logits(model, 0, batch=1)
    with pytest.raises(RuntimeError, match="found no language proxies"):
        vision_features(model, inputs(0, batch=3)["pixel_values"])


def test_explicit_batch_1_proxies_apply_to_every_image(model):
    pixel_values = torch.cat([inputs(0, image=i)["pixel_values"] for i in range(3)])
    proxies = torch.randn(1, 4, 32)
    model.set_language_proxies(proxies)
    broadcast = vision_features(model, pixel_values)
    model.set_language_proxies(proxies.expand(3, -1, -1))
    torch.testing.assert_close(broadcast, vision_features(model, pixel_values), rtol=1e-5, atol=1e-6)
    model.set_language_proxies(torch.randn(2, 4, 32))
    with pytest.raises(RuntimeError, match="batch of 2 expressions but the vision backbone got a batch of 3"):
        vision_features(model, pixel_values)


def test_results_do_not_depend_on_earlier_calls(model):
    expected = logits(model, 0, batch=2)
    logits(model, 1, batch=2)
    logits(model, 2, batch=1)
    model.set_language_proxies(torch.randn(1, 4, 32))  # explicit proxies win for their forward, then are gone
    assert (logits(model, 0, batch=2) - expected).abs().max() > 1e-3
    with pytest.raises(RuntimeError):  # a forward that fails halfway leaves nothing behind
        vision_features(model, inputs(0)["pixel_values"])
    assert model.base_model.routing._local.call is None and model.base_model.routing._local.openers == []
    torch.testing.assert_close(logits(model, 0, batch=2), expected, rtol=0, atol=0)
    # the proxies a forward used are there for inspection afterwards, detached
    proxies = model.get_language_proxies()
    assert proxies.shape == (2, 4, 32) and not proxies.requires_grad


def test_concurrent_forwards_equal_sequential_ones(model):
    """Four threads share one model, each with its own expression and image, many times over."""
    threads, iterations = 4, 15
    expected = [logits(model, k, image=k) for k in range(threads)]
    assert min((expected[0] - e).abs().max() for e in expected[1:]) > 1e-3
    results: dict[int, list[torch.Tensor]] = {k: [] for k in range(threads)}
    errors: list[BaseException] = []
    barrier = threading.Barrier(threads)

    def work(k: int) -> None:
        try:
            barrier.wait()
            for _ in range(iterations):
                results[k].append(logits(model, k, image=k))
        except BaseException as error:  # reported below: a thread's exception would otherwise be lost
            errors.append(error)

    workers = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert not errors, errors
    for k in range(threads):
        assert len(results[k]) == iterations
        for result in results[k]:
            torch.testing.assert_close(result, expected[k], rtol=1e-5, atol=1e-6)


def test_selection_maps_are_per_thread(model):
    model.record_selection_maps()
    try:
        logits(model, 0, batch=2)
        seen: list[dict] = []
        thread = threading.Thread(target=lambda: seen.append(model.get_selection_maps()))
        thread.start()
        thread.join()
        assert seen == [{}]  # another thread neither records nor sees this thread's maps
        maps = model.get_selection_maps()
        assert maps and all(entry["spatial_gate"].shape[0] == 2 for entry in maps.values())
    finally:
        model.record_selection_maps(False)


def replicate_on_cpu(network: nn.Module) -> nn.Module:
    """What `torch.nn.parallel.replicate` builds for one device, without the device copies (which need CUDA):
    `_replicate_for_data_parallel` copies of every module, parameters set as plain tensors."""
    modules = list(network.modules())
    copies = [module._replicate_for_data_parallel() for module in modules]
    index = {id(module): i for i, module in enumerate(modules)}
    for module, replica in zip(modules, copies):
        replica._former_parameters = OrderedDict()
        for key, child in module._modules.items():
            replica._modules[key] = None if child is None else copies[index[id(child)]]
        for key, parameter in module._parameters.items():
            if parameter is not None:
                setattr(replica, key, parameter.detach())
    return copies[0]


def test_data_parallel_replicas_are_refused(model):
    replica = replicate_on_cpu(model)
    with pytest.raises(RuntimeError, match=r"DataParallel.*accelerate launch --multi_gpu"):
        with torch.no_grad():
            replica(**inputs(0))
    torch.testing.assert_close(logits(model, 0), logits(model, 0), rtol=0, atol=0)  # the original still works
    if torch.cuda.is_available():
        return  # DataParallel would move the shared model to the GPU
    # without devices DataParallel calls the model itself, which works as usual
    with torch.no_grad():
        torch.testing.assert_close(nn.DataParallel(model)(**inputs(0)).logits, logits(model, 0), rtol=0, atol=0)
