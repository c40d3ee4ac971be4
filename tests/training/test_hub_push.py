"""`push_adapter_to_hub` through a patched HfApi: what gets uploaded (the files `upload_folder` would select with the
push's allow patterns, read while the call runs), and what is refused."""

from __future__ import annotations

import json
from pathlib import Path
from unittest import mock

import pytest
import torch
from card_info import make_info
from huggingface_hub import CommitInfo, HfApi, ModelCard, RepoUrl
from huggingface_hub.utils import filter_repo_objects
from safetensors.torch import save_file

from s4eca_peft.training.hub import push_adapter_to_hub
from s4eca_peft.training.model_card import render_model_card

REPO_ID = "someone/s4eca-tiny"
COMMIT_URL = f"https://huggingface.co/{REPO_ID}/commit/0123456789abcdef"
UPLOADED = {
    "adapter_config.json",
    "adapter_model.safetensors",
    "README.md",
    "eval_results.json",
    "s4eca_processor_config.json",
    "tokenizer.json",
    "s4eca_base/config.json",
    "widget/scene.png",
}


def write_adapter_folder(folder: Path) -> Path:
    """What training leaves behind: the adapter, card and eval results, plus files that must stay local."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "S4ECA", "num_queries": 8}))
    save_file({"text_adapter.queries": torch.zeros(8, 4)}, str(folder / "adapter_model.safetensors"))
    info = make_info(model_id=REPO_ID)
    (folder / "README.md").write_text(render_model_card(info), encoding="utf-8")
    (folder / "eval_results.json").write_text(json.dumps({"test": {"mIoU": 0.5}}))
    (folder / "s4eca_processor_config.json").write_text("{}")
    (folder / "tokenizer.json").write_text("{}")
    (folder / "s4eca_base").mkdir()
    (folder / "s4eca_base" / "config.json").write_text("{}")
    (folder / "widget").mkdir()
    (folder / "widget" / "scene.png").write_bytes(b"png")
    # left out: logs, training state (pickles inside are fine: never uploaded), hidden and temporary files
    (folder / "runs").mkdir()
    (folder / "runs" / "events.out.tfevents.1").write_bytes(b"\0")
    (folder / "checkpoints" / "checkpoint_0").mkdir(parents=True)
    (folder / "checkpoints" / "checkpoint_0" / "optimizer.bin").write_bytes(b"pickle")
    (folder / "checkpoints" / "latest.txt").write_text("checkpoint_0")
    (folder / "checkpoint-100").mkdir()
    (folder / "checkpoint-100" / "adapter_model.safetensors").write_bytes(b"old weights")
    (folder / "checkpoint-100" / "scheduler.pt").write_bytes(b"pickle")
    (folder / ".cache" / "huggingface").mkdir(parents=True)
    (folder / ".cache" / "huggingface" / "upload.lock").write_text("")
    (folder / "adapter_model.safetensors.tmp").write_bytes(b"partial")
    (folder / "README.md~").write_text("editor backup")
    return folder


@pytest.fixture
def adapter_folder(tmp_path) -> Path:
    return write_adapter_folder(tmp_path / "adapter")


@pytest.fixture
def hub():
    """HfApi with its network calls replaced; autospec checks the arguments against the real signatures. The
    `upload_folder` double records ``{path in the repo: bytes}`` of the files it would upload: those of
    ``folder_path`` its allow and ignore patterns select (`filter_repo_objects`, as upload_folder itself does)."""
    commit = CommitInfo(commit_url=COMMIT_URL, commit_message="m", commit_description="", oid="0123456789abcdef")
    uploads = []

    def upload_folder(self, *, folder_path, allow_patterns=None, ignore_patterns=None, **kwargs):
        files = sorted(p.relative_to(folder_path).as_posix() for p in Path(folder_path).rglob("*") if p.is_file())
        selected = filter_repo_objects(files, allow_patterns=allow_patterns, ignore_patterns=ignore_patterns)
        uploads.append({name: (Path(folder_path) / name).read_bytes() for name in selected})
        return commit

    with (
        mock.patch.object(
            HfApi, "create_repo", autospec=True, return_value=RepoUrl(f"https://huggingface.co/{REPO_ID}")
        ) as create_repo,
        mock.patch.object(HfApi, "create_branch", autospec=True) as create_branch,
        mock.patch.object(HfApi, "upload_folder", autospec=True, side_effect=upload_folder) as upload,
        mock.patch.object(HfApi, "create_commit", autospec=True, side_effect=AssertionError("upload_folder commits")),
        mock.patch("peft.PeftModel.push_to_hub", side_effect=AssertionError("replaces our card")),
    ):
        yield mock.Mock(create_repo=create_repo, create_branch=create_branch, upload_folder=upload, uploads=uploads)


def uploaded_files(hub: mock.Mock) -> dict[str, bytes]:
    hub.upload_folder.assert_called_once()
    return hub.uploads[0]


def test_push_uploads_adapter_card_and_eval_results(adapter_folder, hub):
    url = push_adapter_to_hub(adapter_folder, REPO_ID, token="hf_dummy", private=True, commit_message="S4ECA tiny")
    assert url == COMMIT_URL
    hub.create_repo.assert_called_once()
    assert hub.create_repo.call_args.args[1] == REPO_ID
    assert hub.create_repo.call_args.kwargs | {"exist_ok": True, "private": True} == hub.create_repo.call_args.kwargs
    hub.create_branch.assert_not_called()
    files = uploaded_files(hub)
    assert set(files) == UPLOADED
    assert hub.upload_folder.call_args.kwargs["repo_id"] == REPO_ID
    assert hub.upload_folder.call_args.kwargs["commit_message"] == "S4ECA tiny"
    assert hub.upload_folder.call_args.kwargs["revision"] is None
    readme = files["README.md"].decode("utf-8")
    assert ModelCard(readme).data.library_name == "peft"
    assert readme.startswith("---\nlibrary_name: peft\n")
    assert files["adapter_model.safetensors"] == (adapter_folder / "adapter_model.safetensors").read_bytes()


def test_push_to_a_branch_creates_it(adapter_folder, hub):
    push_adapter_to_hub(str(adapter_folder), REPO_ID, revision="v0.1")
    hub.create_branch.assert_called_once()
    assert hub.create_branch.call_args.kwargs["branch"] == "v0.1"
    assert hub.upload_folder.call_args.kwargs["revision"] == "v0.1"
    assert hub.create_repo.call_args.kwargs["private"] is False


def test_a_card_written_for_another_name_goes_up_addressed_to_the_repo(adapter_folder, hub):
    # a run trained without --hub_model_id names its folder in the card; pushed later, the card names the repo
    local = render_model_card(make_info(model_id="s4eca", widget_image="widget/scene.png",
                                        widget_expression="the pool"))
    assert ModelCard(local).data.widget[0]["src"] == "https://huggingface.co/s4eca/resolve/main/widget/scene.png"
    (adapter_folder / "README.md").write_text(local, encoding="utf-8")
    push_adapter_to_hub(adapter_folder, REPO_ID, revision="v0.1")
    published = ModelCard(uploaded_files(hub)["README.md"].decode("utf-8"))
    assert published.data.model_name == REPO_ID
    assert published.data.widget == [{"src": f"https://huggingface.co/{REPO_ID}/resolve/v0.1/widget/scene.png",
                                      "text": "the pool", "example_title": "the pool"}]
    # the body is the card's own, its title and usage line naming the repo
    assert published.text == ModelCard(local).text.replace("\n# s4eca\n", f"\n# {REPO_ID}\n").replace(
        'from_pretrained("s4eca")', f'from_pretrained("{REPO_ID}")')
    assert f'from_pretrained("{REPO_ID}")' in published.text
    assert (adapter_folder / "README.md").read_text(encoding="utf-8") == local  # the folder's card is left as it is


def test_a_card_that_names_the_repo_goes_up_as_it_is(adapter_folder, hub):
    push_adapter_to_hub(adapter_folder, REPO_ID)
    assert uploaded_files(hub)["README.md"] == (adapter_folder / "README.md").read_bytes()


@pytest.mark.parametrize("missing", ["adapter_config.json", "adapter_model.safetensors", "README.md"])
def test_refuses_folder_without_required_file(adapter_folder, hub, missing):
    (adapter_folder / missing).unlink()
    with pytest.raises(ValueError, match=missing.replace(".", r"\.") + " is missing"):
        push_adapter_to_hub(adapter_folder, REPO_ID)
    hub.create_repo.assert_not_called()
    hub.upload_folder.assert_not_called()


def test_pickled_and_unlisted_files_stay_behind(adapter_folder, hub):
    for name in ("adapter_model.bin", "head.pt", "text/encoder.pth", "state.pkl", "s4eca_base/model.pt", "notes.txt"):
        (adapter_folder / name).parent.mkdir(exist_ok=True)
        (adapter_folder / name).write_bytes(b"pickle")
    push_adapter_to_hub(adapter_folder, REPO_ID)
    assert set(uploaded_files(hub)) == UPLOADED


def test_refuses_a_transformers_card_and_a_missing_folder(adapter_folder, hub, tmp_path):
    readme = adapter_folder / "README.md"
    readme.write_text(readme.read_text().replace("library_name: peft", "library_name: transformers"))
    with pytest.raises(ValueError, match="library_name 'transformers', expected 'peft'"):
        push_adapter_to_hub(adapter_folder, REPO_ID)
    with pytest.raises(ValueError, match="`folder` must be a directory"):
        push_adapter_to_hub(tmp_path / "nowhere", REPO_ID)
    hub.create_repo.assert_not_called()


def test_a_run_folder_uploads_its_adapter_subfolder_at_the_repo_root(tmp_path, hub):
    run = write_adapter_folder(tmp_path / "run")
    (run / "adapter").mkdir()
    (run / "adapter" / "s4eca_base").mkdir()
    for name in ("adapter_config.json", "adapter_model.safetensors", "s4eca_processor_config.json", "tokenizer.json",
                 "s4eca_base/config.json"):
        (run / name).rename(run / "adapter" / name)
    (run / "adapter" / "adapter_model.safetensors").write_bytes(b"the run's best adapter")
    push_adapter_to_hub(run, REPO_ID)
    files = uploaded_files(hub)
    assert set(files) == UPLOADED
    assert files["adapter_model.safetensors"] == b"the run's best adapter"
    assert files["README.md"] == (run / "README.md").read_bytes()

    (run / "adapter_config.json").write_text("{}")  # a stale copy beside the run's adapter
    with pytest.raises(ValueError, match=r"adapter_config\.json is both in .* and in its adapter folder"):
        push_adapter_to_hub(run, REPO_ID)
