"""Predict masks with a trained S4ECA adapter, from a local folder or the Hugging Face Hub (docs/inference.md); an
image whose longer side exceeds `max_side` is predicted in overlapping windows (`s4eca_peft.inference.windows`)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..modeling import ReferringSegmentationProcessor
from ..modeling.image_io import ImageInput, load_image
from ..modeling.processing import _expression_text
from .visualization import overlay_mask
from .windows import WindowStitcher, check_window_settings, stitch_windows

DTYPES = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16,
          "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}


@dataclass
class ReferringPrediction:
    """One prediction, returned when probabilities or selection maps are asked for: the ``mask`` `(height, width)`
    bool at the original size, the foreground ``probabilities`` (float32, same size), the ``selection_maps`` of each
    adapted vision block by name (`{"scale_weights": (n_branches, r), "spatial_gate": (1, h, w)}`; a list with one
    such dict per window for an image predicted window by window) and those ``windows`` as
    `(top, left, bottom, right)` in the original image (`None` for an image predicted whole)."""

    mask: np.ndarray
    probabilities: np.ndarray | None = None
    selection_maps: dict[str, Any] | list[dict[str, Any]] | None = None
    windows: list[tuple[int, int, int, int]] | None = None


def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    """``"bf16"`` / ``"bfloat16"`` / ``torch.bfloat16`` ... -> ``torch.dtype``; ``None`` and ``"auto"`` -> ``None``."""
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    if isinstance(dtype, str) and (dtype == "auto" or dtype.lower() in DTYPES):
        return DTYPES.get(dtype.lower())
    raise ValueError(f"Unknown dtype {dtype!r}; use one of {', '.join(sorted(DTYPES))}, 'auto' or a torch.dtype.")


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``"cuda:1"``, a `torch.device` or ``None`` (CUDA when available) as a device this machine has."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        resolved = None
    if resolved is None or resolved.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device: unknown device {str(device)!r}; expected cpu, cuda, cuda:N or mps.")
    available = {"cpu": 1, "cuda": torch.cuda.device_count() if torch.cuda.is_available() else 0,
                 "mps": int(torch.backends.mps.is_available())}[resolved.type]
    if available <= (resolved.index or 0):
        raise ValueError(f"device {str(device)!r}: this machine has {available} {resolved.type} device(s); "
                         "use --device cpu or another device.")
    return resolved


def overlay_prediction(image: ImageInput, mask: np.ndarray | torch.Tensor, color: tuple[int, int, int] = (255, 40, 40),
                       alpha: float = 0.5) -> Image.Image:
    """The image (any input `predict` accepts) with ``mask`` ``(H, W)`` tinted in ``color`` and outlined."""
    rgb = (load_image(image) * 255.0 + 0.5).astype(np.uint8)  # (H, W, 3) by the package's conversion rule
    mask = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
    return overlay_mask(rgb, mask.astype(bool), color=color, alpha=alpha, outline=mask.astype(bool))


def _pair_inputs(images: Any, expressions: Any) -> tuple[list, list[str], bool]:
    """One image + one expression -> single; lists of equal length pair up; one side single is broadcast."""
    image_list = list(images) if isinstance(images, (list, tuple)) else None
    text_list = list(expressions) if isinstance(expressions, (list, tuple)) else None
    if image_list is not None and text_list is not None and len(image_list) != len(text_list):
        raise ValueError(f"Got {len(image_list)} images and {len(text_list)} expressions; give one expression per "
                         "image, one image with several expressions, or several images with one expression.")
    count = len(image_list) if image_list is not None else len(text_list) if text_list is not None else 1
    if count == 0:
        raise ValueError("Give at least one image and one expression.")
    single = image_list is None and text_list is None
    return image_list or [images] * count, text_list or [expressions] * count, single


class S4ECASegmenter:
    """A trained S4ECA adapter, ready to predict masks at the original image size: ``model`` (a `peft.PeftModel`
    around a `ReferringSegmentationModel`, put in eval mode), its ``processor`` (``image_size`` is the training size)
    and ``metadata`` (its `s4eca_metadata.json`).

    An image whose longer side exceeds ``max_side`` is predicted in windows of ``tile_size`` pixels (default: twice
    the training size) overlapping by at least ``tile_overlap`` (in [0, 1)); ``batch_size`` images or windows go
    through each forward pass (docs/inference.md, "Large images").
    """

    def __init__(self, model: Any, processor: ReferringSegmentationProcessor, metadata: dict[str, Any] | None = None,
                 max_side: int = 1600, tile_size: int | None = None, tile_overlap: float = 0.25,
                 batch_size: int = 8) -> None:
        check_window_settings(max_side, tile_size, tile_overlap, batch_size)
        self.model = model.eval()
        self.processor = processor
        self.metadata = dict(metadata or {})
        self.max_side = int(max_side)
        self.tile_size = int(tile_size) if tile_size is not None else 2 * processor.image_size
        self.tile_overlap = float(tile_overlap)
        self.batch_size = int(batch_size)

    @classmethod
    def from_pretrained(cls, adapter_id_or_dir: str | os.PathLike, revision: str | None = None,
                        device: str | torch.device | None = None, dtype: str | torch.dtype | None = None, *,
                        cache_dir: str | os.PathLike | None = None, token: str | bool | None = None,
                        **settings: Any) -> S4ECASegmenter:
        """Rebuild the base model from the backbones recorded in the adapter folder, Hub repo or package reference
        ``adapter_id_or_dir``, load the adapter and head (safetensors only) and the processor. ``device`` defaults to
        CUDA when available; ``dtype`` is a `torch.dtype` or its name; ``settings`` are the window settings (see the
        class). The arguments and the errors, each naming the file or repo, are in docs/inference.md."""
        from ..adapter_folder import load_for_inference

        model, processor, metadata = load_for_inference(
            str(adapter_id_or_dir), revision=revision, device=resolve_device(device), dtype=resolve_dtype(dtype),
            cache_dir=str(cache_dir) if cache_dir is not None else None, token=token)
        return cls(model, processor, metadata, **settings)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def image_size(self) -> int:
        """Side of the square input the adapter was trained at."""
        return self.processor.image_size

    def needs_windows(self, height: int, width: int) -> bool:
        return max(height, width) > self.max_side

    def window_boxes(self, height: int, width: int) -> list[tuple[int, int, int, int]]:
        """``(top, left, bottom, right)`` of the sliding windows for an image of ``height x width`` pixels."""
        return WindowStitcher.covering(height, width, self.tile_size, self.tile_overlap).boxes()

    def _forward(self, arrays: list[np.ndarray], expressions: list[str],
                 record: bool) -> tuple[list[np.ndarray], list[Any]]:
        """Arrays ``(H_i, W_i, 3)`` + expressions -> probabilities ``(H_i, W_i)`` and selection maps (or None)."""
        inputs = self.processor(images=arrays, text=expressions).to(self.device, dtype=self.dtype)
        tuner = self.model.base_model
        if record and not hasattr(tuner, "record_selection_maps"):
            raise NotImplementedError("return_selection_maps=True needs an S4ECA model: its tuner records the maps.")
        if record:
            tuner.record_selection_maps(True)
        try:
            with torch.inference_mode():
                logits = self.model(**inputs).logits.float()
            maps = tuner.get_selection_maps() if record else {}  # layer -> kind -> (batch, ...)
        finally:
            if record:
                tuner.record_selection_maps(False)
        probabilities = self.processor.post_process_probabilities(logits, [array.shape[:2] for array in arrays])
        split = [{layer: {kind: value[i].float().cpu().numpy() for kind, value in kinds.items()}
                  for layer, kinds in maps.items()} if record else None for i in range(len(arrays))]
        return [probs.cpu().numpy() for probs in probabilities], split

    def _predict_windows(self, array: np.ndarray, expression: str,
                         record: bool) -> tuple[np.ndarray, list[Any] | None, list[tuple[int, int, int, int]]]:
        """Probabilities ``(H, W)`` of one large image, its windows' selection maps, and the windows."""
        height, width = array.shape[:2]
        stitcher = WindowStitcher.covering(height, width, self.tile_size, self.tile_overlap)
        stitched = np.empty((height, width), dtype=np.float32)
        window_maps: list[Any] = []

        def predict(boxes: list[tuple[int, int, int, int]]) -> list[np.ndarray]:
            crops = [array[top:bottom, left:right] for top, left, bottom, right in boxes]
            probabilities, maps = self._forward(crops, [expression] * len(crops), record)
            window_maps.extend(maps)
            return probabilities

        warning = (f"A {height} x {width} image needs {{count}} sliding windows of {self.tile_size} px at overlap "
                   f"{self.tile_overlap}; a smaller tile_overlap or a larger tile_size needs fewer.")
        for (top, left, bottom, right), blended in stitch_windows(stitcher, self.batch_size, predict, warning):
            stitched[top:bottom, left:right] = blended
        return stitched, window_maps if record else None, stitcher.boxes()

    def predict(self, images: ImageInput | Sequence[ImageInput], expressions: str | Sequence[str],
                threshold: float = 0.5, return_probabilities: bool = False, return_selection_maps: bool = False,
                ) -> np.ndarray | ReferringPrediction | list[np.ndarray] | list[ReferringPrediction]:
        """Masks (probability > ``threshold``) at each original image size: a ``(H, W)`` bool array for one image
        (PIL, numpy array or path) and one expression, a list for lists (lists of equal length pair up; a single
        image or expression is broadcast). With ``return_probabilities`` or ``return_selection_maps``,
        `ReferringPrediction`s instead of arrays (docs/inference.md, "Python")."""
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"`threshold` must lie in [0, 1], got {threshold}.")
        image_list, text_list, single = _pair_inputs(images, expressions)
        text_list = [_expression_text(text, f"expressions[{i}]") for i, text in enumerate(text_list)]
        results: list[ReferringPrediction] = []
        pending: list[tuple[np.ndarray, str]] = []  # images predicted whole, `batch_size` per forward

        def keep(probabilities: np.ndarray, maps: Any, boxes: list | None = None) -> None:
            results.append(ReferringPrediction(probabilities > threshold,
                                               probabilities if return_probabilities else None, maps, boxes))

        def flush() -> None:
            if pending:
                for probabilities, maps in zip(*self._forward(*map(list, zip(*pending)), return_selection_maps)):
                    keep(probabilities, maps)
                pending.clear()

        array = None
        for index, (image, text) in enumerate(zip(image_list, text_list)):
            if array is None or image is not image_list[index - 1]:  # one image with several expressions is read once
                array = load_image(image, name=f"images[{index}]")  # (H, W, 3) float32
            if self.needs_windows(*array.shape[:2]):
                flush()
                keep(*self._predict_windows(array, text, return_selection_maps))
            else:
                pending.append((array, text))
                if len(pending) == self.batch_size:
                    flush()
        flush()
        out: list[Any] = results if return_probabilities or return_selection_maps else [r.mask for r in results]
        return out[0] if single else out
