"""Predict masks with a trained S4ECA adapter, from a local folder or the Hugging Face Hub.

```python
from s4eca_peft import S4ECASegmenter
from s4eca_peft.inference import overlay_prediction

segmenter = S4ECASegmenter.from_pretrained("owner/s4eca-swin-b-rrsisd")       # or a local adapter folder
mask = segmenter.predict("tile.png", "the white storage tank left of the road")  # (H, W) bool at the original size
overlay_prediction("tile.png", mask).save("tile_overlay.png")
```

An image whose longer side exceeds `max_side` is predicted in overlapping windows of `tile_size` pixels, blended by
`WindowStitcher`, at most `batch_size` inputs per forward (docs/inference.md, "Large images").
"""

from __future__ import annotations

import os
import warnings
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
from .windows import WindowStitcher

MANY_WINDOWS = 64
"""Above this many sliding windows for one image, a warning is given and progress is shown."""

DTYPES = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16,
          "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}


@dataclass
class ReferringPrediction:
    """One prediction, returned when probabilities or selection maps are asked for.

    Args:
        mask (`np.ndarray` of shape `(height, width)`, dtype `bool`): the mask at the original image size.
        probabilities (`np.ndarray` of shape `(height, width)`, dtype `float32`, *optional*): foreground
            probability at the original size.
        selection_maps (`dict[str, dict[str, np.ndarray]]`, *optional*): the S4ECA selection maps of each adapted
            vision block, by block name: `{"scale_weights": (n_branches, r), "spatial_gate": (1, h, w)}`; for an
            image predicted with sliding windows, a list with one such dict per window.
        windows (`list[tuple[int, int, int, int]]`, *optional*): `(top, left, bottom, right)` of every sliding
            window, in the original image, when the image was predicted window by window; `None` otherwise.
    """

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


DEVICE_TYPES = ("cpu", "cuda", "mps")


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``"cuda:1"`` / ``torch.device`` -> ``torch.device``, checked against this machine before anything is loaded;
    ``None``: CUDA when available, else CPU. An unknown device, or one this machine lacks, is a ValueError naming it."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        resolved = None
    if resolved is None or resolved.type not in DEVICE_TYPES:
        raise ValueError(f"device: unknown device {str(device)!r}; expected cpu, cuda, cuda:N or mps.")
    available = {"cpu": 1, "cuda": torch.cuda.device_count() if torch.cuda.is_available() else 0,
                 "mps": int(torch.backends.mps.is_available())}[resolved.type]
    if available <= (resolved.index or 0):
        raise ValueError(f"device {str(device)!r}: this machine has {available} {resolved.type} device(s); "
                         "use --device cpu or another device.")
    return resolved


def overlay_prediction(
    image: ImageInput, mask: np.ndarray | torch.Tensor, color: tuple[int, int, int] = (255, 40, 40), alpha: float = 0.5
) -> Image.Image:
    """The image (any input `predict` accepts) with ``mask`` ``(H, W)`` tinted in ``color`` and outlined."""
    rgb = (load_image(image) * 255.0 + 0.5).astype(np.uint8)  # (H, W, 3) by the package's conversion rule
    mask = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
    return overlay_mask(rgb, mask.astype(bool), color=color, alpha=alpha, outline=mask.astype(bool))


def _pair_inputs(images: Any, expressions: Any) -> tuple[list, list[str], bool]:
    """One image + one expression -> single; lists of equal length pair up; one side single is broadcast."""
    image_is_list = isinstance(images, (list, tuple))
    text_is_list = isinstance(expressions, (list, tuple))
    image_list = list(images) if image_is_list else [images]
    text_list = list(expressions) if text_is_list else [expressions]
    if image_is_list and text_is_list and len(image_list) != len(text_list):
        raise ValueError(
            f"Got {len(image_list)} images and {len(text_list)} expressions; give one expression per image, one "
            "image with several expressions, or several images with one expression."
        )
    if not image_list or not text_list:
        raise ValueError("Give at least one image and one expression.")
    if image_is_list and not text_is_list:
        text_list = text_list * len(image_list)
    elif text_is_list and not image_is_list:
        image_list = image_list * len(text_list)
    return image_list, text_list, not (image_is_list or text_is_list)


class S4ECASegmenter:
    """A trained S4ECA adapter, its base model and processor, ready to predict masks at the original image size.

    Args:
        model: the adapted model (a `peft.PeftModel` around a `ReferringSegmentationModel`), put in eval mode.
        processor (`ReferringSegmentationProcessor`): its processor; `processor.image_size` is the training size.
        metadata (`dict`, *optional*): the adapter's `s4eca_metadata.json`.
        max_side (`int`, *optional*, defaults to 1600): images whose longer side exceeds it are predicted with
            sliding windows (see the module docstring); smaller ones are resized whole to the training size.
        tile_size (`int`, *optional*): side of a sliding window in original pixels; defaults to twice the
            training size.
        tile_overlap (`float`, *optional*, defaults to 0.25): minimum overlap of neighbouring windows, as a
            fraction of the window side, in [0, 1).
        batch_size (`int`, *optional*, defaults to 8): images (or windows) per forward pass.
    """

    def __init__(
        self,
        model: Any,
        processor: ReferringSegmentationProcessor,
        metadata: dict[str, Any] | None = None,
        max_side: int = 1600,
        tile_size: int | None = None,
        tile_overlap: float = 0.25,
        batch_size: int = 8,
    ) -> None:
        for name, value in (("max_side", max_side), ("tile_size", tile_size), ("batch_size", batch_size)):
            if value is not None and value <= 0:
                raise ValueError(f"`{name}` must be positive, got {value}.")
        if not 0.0 <= tile_overlap < 1.0:
            raise ValueError(f"`tile_overlap` must lie in [0, 1), got {tile_overlap}.")
        self.model = model.eval()
        self.processor = processor
        self.metadata = dict(metadata or {})
        self.max_side = int(max_side)
        self.tile_size = int(tile_size) if tile_size is not None else 2 * processor.image_size
        self.tile_overlap = float(tile_overlap)
        self.batch_size = int(batch_size)

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(
        cls,
        adapter_id_or_dir: str | os.PathLike,
        revision: str | None = None,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        *,
        cache_dir: str | os.PathLike | None = None,
        token: str | bool | None = None,
        **settings: Any,
    ) -> S4ECASegmenter:
        """Rebuild the base model from the backbones recorded in the adapter folder or Hub repo, load the adapter
        and head (safetensors only), and set up the processor.

        Args:
            adapter_id_or_dir: a folder written by `s4eca_peft.inference.save_for_inference`, or a Hub repo id.
            revision: branch, tag or commit of the Hub repo (pin a commit for reproducible results).
            device: defaults to CUDA when available, else CPU.
            dtype: `torch.float32` (default), `torch.bfloat16`, `torch.float16`, or their names.
            cache_dir / token: passed to the Hub client.
            settings: `max_side`, `tile_size`, `tile_overlap`, `batch_size` (see the class).

        The errors it raises, each naming the file or repo, are listed in docs/inference.md ("Safety and errors").
        """
        from ..adapter_folder import load_for_inference

        model, processor, metadata = load_for_inference(
            str(adapter_id_or_dir), revision=revision, device=resolve_device(device), dtype=resolve_dtype(dtype),
            cache_dir=str(cache_dir) if cache_dir is not None else None, token=token,
        )
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

    # --------------------------------------------------------------- windows
    def needs_windows(self, height: int, width: int) -> bool:
        return max(height, width) > self.max_side

    def window_boxes(self, height: int, width: int) -> list[tuple[int, int, int, int]]:
        """``(top, left, bottom, right)`` of the sliding windows for an image of ``height x width`` pixels."""
        return WindowStitcher.covering(height, width, self.tile_size, self.tile_overlap).boxes()

    # ------------------------------------------------------------- prediction
    def _selection_recorder(self) -> Any:
        tuner = getattr(self.model, "base_model", None)
        if tuner is None or not hasattr(tuner, "get_selection_maps"):
            raise NotImplementedError(
                "return_selection_maps=True needs an S4ECA model whose tuner exposes get_selection_maps()."
            )
        return tuner

    def _forward(self, arrays: list[np.ndarray], expressions: list[str], record: bool) -> tuple[torch.Tensor, Any]:
        """Arrays ``(H_i, W_i, 3)`` + expressions -> logits ``(batch, 1, S/4, S/4)`` (and the selection maps)."""
        inputs = self.processor(images=arrays, text=expressions)  # pixel_values (B, 3, S, S), input_ids (B, L)
        model_inputs = {"pixel_values": inputs["pixel_values"].to(self.device, self.dtype),
                        "input_ids": inputs["input_ids"].to(self.device),
                        "attention_mask": inputs["attention_mask"].to(self.device)}
        tuner = self._selection_recorder() if record else None
        if tuner is not None:
            tuner.record_selection_maps(True)
        try:
            with torch.inference_mode():
                logits = self.model(**model_inputs).logits.float()
            # layer -> {"scale_weights": (B, n, r), "spatial_gate": (B, 1, h, w)}
            return logits, tuner.get_selection_maps() if tuner is not None else None
        finally:
            if tuner is not None:
                tuner.record_selection_maps(False)

    @staticmethod
    def _split_maps(maps: dict[str, dict[str, torch.Tensor]], index: int) -> dict[str, dict[str, np.ndarray]]:
        """Sample ``index`` of the recorded maps (layer -> kind -> tensor with a batch axis), moved to numpy."""
        return {layer: {kind: value[index].float().cpu().numpy() for kind, value in kinds.items()}
                for layer, kinds in maps.items()}

    def _predict_windows(
        self, array: np.ndarray, expression: str, record: bool
    ) -> tuple[torch.Tensor, list[Any], list[tuple[int, int, int, int]]]:
        """Probabilities ``(H, W)`` of one large image, overlapping windows blended by `WindowStitcher`."""
        from tqdm.auto import tqdm

        height, width = array.shape[:2]
        stitcher = WindowStitcher.covering(height, width, self.tile_size, self.tile_overlap)
        boxes = stitcher.boxes()
        if len(boxes) > MANY_WINDOWS:
            warnings.warn(
                f"A {height} x {width} image needs {len(boxes)} sliding windows of {self.tile_size} px at overlap "
                f"{self.tile_overlap}; a smaller tile_overlap or a larger tile_size needs fewer.", stacklevel=3
            )
        stitched = np.empty((height, width), dtype=np.float32)
        window_maps: list[Any] = []
        starts = range(0, len(boxes), self.batch_size)
        for start in tqdm(starts, desc="windows", unit="batch", disable=len(boxes) <= MANY_WINDOWS):
            chunk = boxes[start : start + self.batch_size]
            crops = [array[top:bottom, left:right] for top, left, bottom, right in chunk]
            logits, maps = self._forward(crops, [expression] * len(crops), record)
            sizes = [crop.shape[:2] for crop in crops]
            for i, (box, probs) in enumerate(zip(chunk, self.processor.post_process_probabilities(logits, sizes))):
                for (top, left, bottom, right), blended in stitcher.add(box, probs.cpu().numpy()):
                    stitched[top:bottom, left:right] = blended
                if record:
                    window_maps.append(self._split_maps(maps, i))
        return torch.from_numpy(stitched), window_maps, boxes

    def predict(
        self,
        images: ImageInput | Sequence[ImageInput],
        expressions: str | Sequence[str],
        threshold: float = 0.5,
        return_probabilities: bool = False,
        return_selection_maps: bool = False,
    ) -> np.ndarray | ReferringPrediction | list[np.ndarray] | list[ReferringPrediction]:
        """Masks at each original image size.

        Args:
            images: one image or a list (PIL images, ``(H, W[, C])`` numpy arrays, or paths; docs/architecture.md,
                "Image conversion rule").
            expressions: one expression or a list. Lists of equal length pair up; one image with a list of
                expressions, or a list of images with one expression, is broadcast.
            threshold: a pixel is foreground when its probability exceeds it.
            return_probabilities: also return the ``(H, W)`` float32 probabilities.
            return_selection_maps: also return the S4ECA scale and spatial selection maps of each adapted block
                (for an image predicted with sliding windows: a list with one entry per window, see
                `ReferringPrediction.windows`).

        Returns:
            One image and one expression: a ``(H, W)`` bool numpy array; with lists: a list of them. With
            ``return_probabilities`` or ``return_selection_maps``: `ReferringPrediction`s instead of arrays.
        """
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"`threshold` must lie in [0, 1], got {threshold}.")
        image_list, text_list, single = _pair_inputs(images, expressions)
        text_list = [_expression_text(text, f"expressions[{i}]") for i, text in enumerate(text_list)]  # before any forward
        if return_selection_maps:
            self._selection_recorder()

        results: list[ReferringPrediction | None] = [None] * len(image_list)
        pending: list[tuple[int, np.ndarray, str]] = []

        def result(probs: torch.Tensor, maps: Any, boxes: list | None = None) -> ReferringPrediction:
            probs = probs.cpu().numpy()  # (H, W) at the original size
            return ReferringPrediction(probs > threshold, probs if return_probabilities else None,
                                       maps if return_selection_maps else None, boxes)

        def flush() -> None:
            if not pending:
                return
            arrays, texts = [a for _, a, _ in pending], [t for _, _, t in pending]
            logits, maps = self._forward(arrays, texts, return_selection_maps)
            probabilities = self.processor.post_process_probabilities(logits, [a.shape[:2] for a in arrays])
            for j, ((index, _, _), probs) in enumerate(zip(pending, probabilities)):
                results[index] = result(probs, self._split_maps(maps, j) if return_selection_maps else None)
            pending.clear()

        last_image, last_array = None, None
        for index, (image, text) in enumerate(zip(image_list, text_list)):
            if image is last_image and last_array is not None:
                array = last_array  # one image with several expressions is read once
            else:
                array = load_image(image, name=f"images[{index}]")  # (H, W, 3) float32
                last_image, last_array = image, array
            height, width = array.shape[:2]
            if self.needs_windows(height, width):
                results[index] = result(*self._predict_windows(array, text, return_selection_maps))
            else:
                pending.append((index, array, text))
                if len(pending) == self.batch_size:
                    flush()
        flush()

        if return_probabilities or return_selection_maps:
            out: list[Any] = results
        else:
            out = [result.mask for result in results]
        return out[0] if single else out
