"""Publish a trained S4ECA adapter folder on the Hugging Face Hub, with our model card.

``PeftModel.push_to_hub`` is deliberately not used: it replaces the README with a transformers card
(``library_name: transformers``). :func:`push_adapter_to_hub` uploads the folder as it is on disk, card included,
in one commit. A training run's folder keeps its adapter in ``adapter/``: those files go to the repo's root, beside
the run's card and results, so the repo is a plain adapter folder.
"""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import CommitOperationAdd, HfApi, ModelCard

from ..adapter_folder import adapter_root
from ..files import PICKLE_SUFFIXES

__all__ = ["REQUIRED_FILES", "push_adapter_to_hub"]

REQUIRED_FILES: tuple[str, ...] = ("adapter_config.json", "adapter_model.safetensors", "README.md")
# Training state that stays local: accelerate's `checkpoints/` and Trainer-style `checkpoint-<step>` folders.
_SKIPPED_DIRS = ("checkpoints",)
_SKIPPED_DIR_PREFIXES = ("checkpoint-", "checkpoint_")
_TEMPORARY_SUFFIXES = (".tmp", ".temp", ".swp", ".swo", ".part", ".partial", ".incomplete", ".lock", "~")


def _is_skipped_dir(name: str) -> bool:
    return (
        name.startswith(".")
        or name == "__pycache__"
        or name in _SKIPPED_DIRS
        or name.startswith(_SKIPPED_DIR_PREFIXES)
    )


def _is_temporary_file(name: str) -> bool:
    return name.startswith((".", "~")) or name.endswith(_TEMPORARY_SUFFIXES)


def _files_to_upload(folder: Path) -> list[Path]:
    """Files under ``folder`` minus hidden entries, checkpoints and temporary files, in a stable order."""
    files: list[Path] = []
    for path in sorted(folder.iterdir()):
        if path.is_dir():
            if not _is_skipped_dir(path.name):
                files.extend(_files_to_upload(path))
        elif path.is_file() and not _is_temporary_file(path.name):
            files.append(path)
    return files


def _upload_plan(folder: Path) -> dict[str, Path]:
    """``{path in the repo: file}``: the files of ``folder`` (`_files_to_upload`), those of a run folder's adapter
    subfolder at the repo's root. A name found both there and in the run folder is refused."""
    adapter = adapter_root(folder)
    plan = {path.relative_to(adapter).as_posix(): path for path in _files_to_upload(adapter)}
    if adapter != folder:
        for path in _files_to_upload(folder):
            if adapter in path.parents:
                continue
            name = path.relative_to(folder).as_posix()
            if name in plan:
                raise ValueError(
                    f"{name} is both in {str(folder)!r} and in its adapter folder {str(adapter)!r}; the repo can hold "
                    "one of them. Remove the stale one."
                )
            plan[name] = path
    return dict(sorted(plan.items()))


def _check_folder(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        raise ValueError(f"`folder` must be a directory holding a saved S4ECA adapter, got {str(folder)!r}")
    plan = _upload_plan(folder)
    for name in REQUIRED_FILES:
        if name not in plan:
            hint = " (write it with s4eca_peft.model_card.render_model_card)" if name == "README.md" else ""
            raise ValueError(
                f"{name} is missing from {str(folder)!r}; an adapter folder needs {list(REQUIRED_FILES)}{hint}"
            )
    card = ModelCard.load(plan["README.md"])
    if card.data.library_name != "peft":
        raise ValueError(
            f"README.md in {str(folder)!r} has library_name {card.data.library_name!r}, expected 'peft': "
            "write the card with s4eca_peft.model_card.render_model_card"
        )
    pickles = [name for name, path in plan.items() if path.suffix.lower() in PICKLE_SUFFIXES]
    if pickles:
        raise ValueError(
            f"Refusing to upload pickle files {pickles} from {str(folder)!r}: they run code when loaded. "
            "Save weights as safetensors, or move these files out of the folder."
        )
    return plan


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

    Everything in ``folder`` is uploaded except hidden entries, ``checkpoints/`` and ``checkpoint-*`` folders and
    temporary files; a training run's ``adapter/`` subfolder goes to the repo's root. The upload must hold
    ``adapter_config.json``, ``adapter_model.safetensors`` and a README.md whose front matter says
    ``library_name: peft``; pickle files (``*.bin``, ``*.pt``, ``*.pth``, ``*.pkl``, ...) are refused.

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
    plan = _check_folder(folder)
    api = HfApi(token=token)
    repo_url = api.create_repo(repo_id, private=private, repo_type="model", exist_ok=True)
    repo_id = getattr(repo_url, "repo_id", None) or repo_id
    if revision is not None:
        api.create_branch(repo_id, branch=revision, repo_type="model", exist_ok=True)
    operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(path)) for name, path in plan.items()]
    commit = api.create_commit(
        repo_id,
        operations,
        commit_message=commit_message,
        repo_type="model",
        revision=revision,
    )
    return str(commit.commit_url)
