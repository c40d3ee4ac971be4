"""Publish a trained S4ECA adapter folder on the Hugging Face Hub, with our model card.

``PeftModel.push_to_hub`` is deliberately not used: it replaces the README with a transformers card
(``library_name: transformers``). :func:`push_adapter_to_hub` uploads the files `PUBLISHED_FILES` names, card
included, in one commit (`HfApi.upload_folder` with them as allow patterns). A training run's folder keeps its adapter
in ``adapter/``: those files go to the repo's root, beside the run's card and results, so the repo is a plain adapter
folder.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from huggingface_hub import HfApi, ModelCard

from ..adapter_folder import ADAPTER_CONFIG, ADAPTER_WEIGHTS, PUBLISHED_FILES, RUN_LEVEL_FILES, adapter_root

__all__ = ["PUBLISHED_FILES", "REQUIRED_FILES", "RUN_LEVEL_FILES", "push_adapter_to_hub"]

REQUIRED_FILES: tuple[str, ...] = (ADAPTER_CONFIG, ADAPTER_WEIGHTS, "README.md")


def _link_or_copy(source: Path, destination: Path) -> None:
    destination.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, destination)
    except OSError:
        shutil.copyfile(source, destination)


def _published_folder(folder: Path, staging: Path) -> Path:
    """The folder to upload: ``folder`` itself when it is a plain adapter folder; for a run folder, ``staging`` filled
    with (links to) its adapter's files and the run's own card and results. A name in both is refused."""
    adapter = adapter_root(folder)
    if adapter == folder:
        return folder
    for name in PUBLISHED_FILES:
        in_adapter, in_run = adapter / name, folder / name
        if in_adapter.is_file() and in_run.is_file():
            raise ValueError(
                f"{name} is both in {str(folder)!r} and in its adapter folder {str(adapter)!r}; the repo can hold "
                "one of them. Remove the stale one."
            )
        if in_adapter.is_file() or (in_run.is_file() and name in RUN_LEVEL_FILES):
            _link_or_copy(in_adapter if in_adapter.is_file() else in_run, staging / name)
    return staging


def _check_folder(published: Path, folder: Path) -> None:
    """``published`` (what `_published_folder` chose from ``folder``) holds an adapter and a PEFT card."""
    for name in REQUIRED_FILES:
        if not (published / name).is_file():
            hint = " (write it with s4eca_peft.model_card.render_model_card)" if name == "README.md" else ""
            raise ValueError(
                f"{name} is missing from {str(folder)!r}; an adapter folder needs {list(REQUIRED_FILES)}{hint}"
            )
    card = ModelCard.load(published / "README.md")
    if card.data.library_name != "peft":
        raise ValueError(
            f"README.md in {str(folder)!r} has library_name {card.data.library_name!r}, expected 'peft': "
            "write the card with s4eca_peft.model_card.render_model_card"
        )


def push_adapter_to_hub(
    folder: str | Path,
    repo_id: str,
    *,
    token: str | None = None,
    private: bool = False,
    revision: str | None = None,
    commit_message: str = "Upload S4ECA adapter",
) -> str:
    """Upload an adapter folder (weights, config, README.md card, eval results, processor files) in one commit.

    Only the files `PUBLISHED_FILES` names are uploaded (never checkpoints, logs or pickled files); a training run's
    ``adapter/`` subfolder goes to the repo's root. The upload must hold ``adapter_config.json``,
    ``adapter_model.safetensors`` and a README.md whose front matter says ``library_name: peft``.

    Args:
        folder: a training run's folder, or the folder ``save_pretrained`` wrote with our model card added.
        repo_id: target model repo, ``"user/name"``; created if missing.
        token: Hub token; defaults to the logged-in one.
        private: create the repo private (ignored when it already exists).
        revision: branch to commit to; created from the default branch if missing.
        commit_message: message of the upload commit.

    Returns:
        The URL of the commit.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"`folder` must be a directory holding a saved S4ECA adapter, got {str(folder)!r}")
    with tempfile.TemporaryDirectory(prefix="s4eca-upload-") as staging:
        published = _published_folder(folder, Path(staging))
        _check_folder(published, folder)
        api = HfApi(token=token)
        repo_url = api.create_repo(repo_id, private=private, repo_type="model", exist_ok=True)
        repo_id = getattr(repo_url, "repo_id", None) or repo_id
        if revision is not None:
            api.create_branch(repo_id, branch=revision, repo_type="model", exist_ok=True)
        commit = api.upload_folder(
            repo_id=repo_id, folder_path=published, allow_patterns=list(PUBLISHED_FILES),
            commit_message=commit_message, repo_type="model", revision=revision,
        )
    return str(commit.commit_url)
