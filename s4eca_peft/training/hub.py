"""Publish a trained S4ECA adapter folder on the Hugging Face Hub, with our model card.

``PeftModel.push_to_hub`` is not used: it replaces the README with a transformers card (``library_name:
transformers``). A training run's adapter (its ``adapter/`` folder) goes to the repo's root, beside the run's card and
results, so the repo is a plain adapter folder.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from huggingface_hub import HfApi, ModelCard

from ..adapter_folder import ADAPTER_CONFIG, ADAPTER_WEIGHTS, PUBLISHED_FILES, RUN_LEVEL_FILES, adapter_root
from .model_card import address_card

REQUIRED_FILES: tuple[str, ...] = (ADAPTER_CONFIG, ADAPTER_WEIGHTS, "README.md")


def _stage(folder: Path, staging: Path) -> None:
    """Fill ``staging`` with (links to) the files to upload: those of an adapter folder, or for a run folder its
    adapter's files and the run's own card and results. A name in both is refused."""
    adapter = adapter_root(folder)
    for name in PUBLISHED_FILES:
        in_adapter, in_run = adapter / name, folder / name
        if adapter != folder and in_adapter.is_file() and in_run.is_file():
            raise ValueError(f"{name} is both in {str(folder)!r} and in its adapter folder {str(adapter)!r}; the repo "
                             "can hold one of them. Remove the stale one.")
        source = in_adapter if in_adapter.is_file() else in_run
        if source.is_file() and (source == in_adapter or name in RUN_LEVEL_FILES):
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            try:  # a link: the base weights may be large
                os.link(source, staging / name)
            except OSError:
                shutil.copyfile(source, staging / name)


def push_adapter_to_hub(folder: str | Path, repo_id: str, *, token: str | None = None, private: bool = False,
                        revision: str | None = None, commit_message: str = "Upload S4ECA adapter") -> str:
    """Upload an adapter folder or a training run's folder to ``repo_id`` (created if missing; ``private`` only then)
    in one commit, on the branch ``revision`` (created if missing); returns the commit's URL.

    Only the files `PUBLISHED_FILES` names go up (never checkpoints, logs or pickled files), through
    `HfApi.upload_folder` with them as allow patterns. They must include ``adapter_config.json``,
    ``adapter_model.safetensors`` and a README.md whose front matter says ``library_name: peft``. The card goes up
    addressed to the repo (`address_card`: its title, usage line, model-index name and widget image), the folder's
    own left as it is.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"`folder` must be a directory holding a saved S4ECA adapter, got {str(folder)!r}")
    with tempfile.TemporaryDirectory(prefix="s4eca-upload-") as staging:
        published = Path(staging)
        _stage(folder, published)
        for name in REQUIRED_FILES:
            if not (published / name).is_file():
                hint = " (write it with s4eca_peft.training.model_card.render_model_card)" if name == "README.md" else ""
                raise ValueError(f"{name} is missing from {str(folder)!r}; an adapter folder needs "
                                 f"{list(REQUIRED_FILES)}{hint}")
        library = ModelCard.load(published / "README.md").data.library_name
        if library != "peft":
            raise ValueError(f"README.md in {str(folder)!r} has library_name {library!r}, expected 'peft': write the "
                             "card with s4eca_peft.training.model_card.render_model_card")
        api = HfApi(token=token)
        repo_url = api.create_repo(repo_id, private=private, repo_type="model", exist_ok=True)
        repo_id = getattr(repo_url, "repo_id", None) or repo_id
        if revision is not None:
            api.create_branch(repo_id, branch=revision, repo_type="model", exist_ok=True)
        card = published / "README.md"
        text = card.read_text(encoding="utf-8")
        addressed = address_card(text, repo_id, revision)
        if addressed != text:  # a new file: the staged one may be a link to the folder's own card
            card.unlink()
            card.write_text(addressed, encoding="utf-8")
        commit = api.upload_folder(repo_id=repo_id, folder_path=published, allow_patterns=list(PUBLISHED_FILES),
                                   commit_message=commit_message, repo_type="model", revision=revision)
    return str(commit.commit_url)
