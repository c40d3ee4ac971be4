"""The Gradio app (docs/demo.md): `DemoSession.segment` does the work without Gradio; `build_demo` lays it out as a
`gradio.Blocks` app with one endpoint, ``/segment``. Gradio is imported only when an app is built; analytics are off.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..data.synthetic import generate_scene
from ..geo.reading import is_georeferenced_geotiff
from ..geo.writing import write_mask_geotiff
from ..inference import S4ECASegmenter, overlay_prediction
from ..inference.visualization import save_image_atomic
from ..modeling.image_io import load_image
from ..predict_command import mask_to_image
from .pictures import scale_weights_picture, spatial_gate_picture

EXAMPLE_SEEDS = (1000, 1001, 1002)
EXAMPLE_SIZE = 256
FILE_MAX_AGE_S = 600  # uploads and written masks older than this are removed (uploads checked every minute)
MASK_SUFFIXES = (".png", ".tif")
IMAGE_HEIGHT = 320  # pixels of the image and overlay panels
PICTURE_SIDE = 256  # the image under the spatial gates is shrunk to at most this side


def require_gradio() -> Any:
    """``import gradio``, or an error that names the extra to install."""
    try:
        import gradio
    except ImportError as error:
        raise ImportError("The S4ECA demo needs Gradio, which the 'demo' extra installs: pip install "
                          "'s4eca-peft[demo]'.") from error
    return gradio


@dataclass
class SegmentationView:
    """What the app shows for one image and expression: the ``mask`` (`S4ECASegmenter.predict`'s), its ``overlay``, the
    selection pictures (`None` for a selection switched off), the mask PNG, a Markdown ``summary``, and the mask
    GeoTIFF on the input's grid for a georeferenced GeoTIFF input."""

    mask: np.ndarray
    overlay: Image.Image
    scale_weights: Image.Image | None
    spatial_gate: Image.Image | None
    mask_path: Path
    summary: str
    geotiff_path: Path | None = None


def short_block_names(names: list[str]) -> dict[str, str]:
    """Block names without the dotted prefix they all share, keeping its last part for context
    (``vision_model.backbone.swin.encoder.layers.0.blocks.1`` -> ``layers.0.blocks.1``)."""
    split = [name.split(".") for name in names]
    common = min(len(os.path.commonprefix(split)), *(len(parts) - 1 for parts in split)) if split else 0
    return {name: ".".join(parts[max(common - 1, 0):]) for name, parts in zip(names, split)}


def branch_labels(segmenter: S4ECASegmenter, count: int) -> list[str]:
    """``"k3 d2"`` (kernel size, dilation) per extractor branch, from the active adapter's config."""
    config = getattr(segmenter.model, "active_peft_config", None)
    kernels = getattr(config, "extractor_kernel_sizes", None) or []
    dilations = getattr(config, "extractor_dilations", None) or []
    if len(kernels) == len(dilations) == count:
        return [f"k{k} d{d}" for k, d in zip(kernels, dilations)]
    return [f"branch {i + 1}" for i in range(count)]


def write_example_scenes(folder: Path) -> list[list[str]]:
    """A few synthetic scenes as PNGs in ``folder``; ``[[image path, expression], ...]`` for `gradio.Examples`."""
    examples = []
    for seed in EXAMPLE_SEEDS:
        image, _, expression, _ = generate_scene(seed, EXAMPLE_SIZE)
        path = folder / f"scene_{seed}.png"
        save_image_atomic(image, path)
        examples.append([str(path), expression])
    return examples


class DemoSession:
    """One loaded adapter serving the app; mask files go under ``workdir`` (a new temporary folder by default)."""

    def __init__(self, segmenter: S4ECASegmenter, workdir: str | os.PathLike | None = None) -> None:
        self.segmenter = segmenter
        self.workdir = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="s4eca-demo-"))
        self.mask_dir = self.workdir / "masks"
        self.mask_dir.mkdir(parents=True, exist_ok=True)

    def segment(self, image: str | os.PathLike, expression: str, threshold: float = 0.5) -> SegmentationView:
        """Predict ``image`` (a file path) for ``expression``."""
        if not isinstance(expression, str) or not expression.strip():
            raise ValueError("Type an expression that describes the object to segment.")
        array = load_image(image, name="image")  # (H, W, 3) float32, read once for the prediction and the pictures
        prediction = self.segmenter.predict(array, expression, threshold=threshold, return_selection_maps=True)
        mask, windows = prediction.mask, prediction.windows or []
        maps = prediction.selection_maps[0] if windows else prediction.selection_maps
        top, left, bottom, right = windows[0] if windows else (0, 0, *mask.shape)  # the maps of the first window
        scale, gate = self._pictures(maps, array[top:bottom, left:right])
        path = self._write_mask(mask, image)
        geotiff = write_mask_geotiff(mask, image, path.with_suffix(".tif")) if is_georeferenced_geotiff(image) else None
        summary = (f"Mask: {int(mask.sum())} of {mask.size} pixels ({100 * mask.mean():.1f} %), "
                   f"threshold {threshold:.2f}.")
        if windows:
            summary += f" Predicted in {len(windows)} sliding windows; the selection maps show the first window."
        if geotiff is not None:
            summary += " The mask is also offered as a GeoTIFF on the input's grid."
        return SegmentationView(mask, overlay_prediction(array, mask), scale, gate, path, summary, geotiff)

    def _pictures(self, maps: dict[str, dict[str, np.ndarray]],
                  array: np.ndarray) -> tuple[Image.Image | None, Image.Image | None]:
        """Pictures of the selections the adapter has switched on (a switched-off one is recorded as uniform)."""
        config = getattr(self.segmenter.model, "active_peft_config", None)
        labels = short_block_names(list(maps))
        scale = gate = None
        if getattr(config, "scale_selection", True) and maps:
            weights = {labels[b]: kinds["scale_weights"] for b, kinds in maps.items()}
            count = next(iter(weights.values())).shape[0]  # extractor branches
            scale = scale_weights_picture(weights, branch_labels(self.segmenter, count))
        if getattr(config, "spatial_selection", True) and maps:
            background = Image.fromarray((array * 255.0 + 0.5).astype(np.uint8))
            background.thumbnail((PICTURE_SIDE, PICTURE_SIDE))
            gates = {labels[b]: kinds["spatial_gate"][0] for b, kinds in maps.items()}  # (1, H, W) -> (H, W)
            gate = spatial_gate_picture(gates, np.asarray(background))
        return scale, gate

    def _write_mask(self, mask: np.ndarray, image: str | os.PathLike) -> Path:
        for old in [p for p in self.mask_dir.iterdir() if p.suffix in MASK_SUFFIXES]:
            with contextlib.suppress(FileNotFoundError):  # another request may have removed it
                if time.time() - old.stat().st_mtime > FILE_MAX_AGE_S:
                    old.unlink()
        path = self.mask_dir / f"{Path(image).stem}_mask_{uuid.uuid4().hex[:10]}.png"
        save_image_atomic(mask_to_image(mask), path)
        return path


def explain_refused_uploads(gr: Any, image: Any) -> None:
    """A file that ``image`` (a `gradio.Image`) cannot open is answered by a message naming the formats the app reads,
    and removed at once when it is an upload in Gradio's cache."""
    preprocess = image.preprocess

    def preprocess_or_explain(payload: Any) -> Any:
        try:
            return preprocess(payload)
        except (OSError, ValueError) as error:  # PIL's UnidentifiedImageError is an OSError
            upload = Path(os.path.realpath(getattr(payload, "path", None) or image.GRADIO_CACHE))
            if upload.is_relative_to(os.path.realpath(image.GRADIO_CACHE)) and upload.is_file():
                upload.unlink(missing_ok=True)
            name = getattr(payload, "orig_name", None) or "The upload"
            raise gr.Error(f"{name} is not an image the app can read: upload a PNG, JPEG or (Geo)TIFF.") from error

    image.preprocess = preprocess_or_explain


DESCRIPTION = """\
Upload an aerial image (or pick an example scene), describe one object in it, and press **Segment**. The app shows
the predicted mask over the image, the language-guided **scale weights** (how much each receptive field of the
multi-scale extractor counts, per adapted vision block) and the language-guided **spatial gate** (where each
adapted block lets the adapter act), and offers the mask as a PNG (0 background, 255 foreground); for a
georeferenced GeoTIFF, also as a GeoTIFF with the same coordinate system and transform.
"""


def build_demo(segmenter: S4ECASegmenter, workdir: str | os.PathLike | None = None, title: str | None = None) -> Any:
    """The app serving ``segmenter`` as a `gradio.Blocks` (not launched), its files under ``workdir``."""
    gr = require_gradio()
    session = DemoSession(segmenter, workdir)
    examples = write_example_scenes(session.workdir / "examples")
    title = title or "S4ECA referring segmentation"

    def run(image: str | None, expression: str, threshold: float) -> tuple:
        if not image:
            raise gr.Error("Upload an image or pick an example scene first.")
        try:
            view = session.segment(image, expression, threshold)
        except (ValueError, TypeError, FileNotFoundError) as error:
            raise gr.Error(str(error)) from error
        geotiff = str(view.geotiff_path) if view.geotiff_path is not None else None
        return (view.overlay, mask_to_image(view.mask), view.scale_weights, view.spatial_gate, str(view.mask_path),
                view.summary, geotiff)

    def picture(label: str, name: str, **options: Any) -> Any:
        return gr.Image(label=label, type="pil", format="png", interactive=False, elem_id=f"s4eca-{name}", **options)

    with gr.Blocks(title=title, analytics_enabled=False, delete_cache=(60, FILE_MAX_AGE_S)) as demo:
        gr.Markdown(f"# {title}\n\n{DESCRIPTION}")
        with gr.Row():
            with gr.Column():
                image = gr.Image(label="Image", type="filepath", image_mode=None, sources=["upload", "clipboard"],
                                 height=IMAGE_HEIGHT, elem_id="s4eca-image")
                expression = gr.Textbox(label="Expression", placeholder="the white storage tank left of the road",
                                        elem_id="s4eca-expression")
                threshold = gr.Slider(0.0, 1.0, value=0.5, step=0.05, label="Threshold", elem_id="s4eca-threshold")
                submit = gr.Button("Segment", variant="primary", elem_id="s4eca-submit")
                gr.Examples(examples=examples, inputs=[image, expression], label="Example scenes",
                            elem_id="s4eca-examples")
            with gr.Column():
                overlay = picture("Mask over the image", "overlay", height=IMAGE_HEIGHT)
                with gr.Row():
                    mask = picture("Mask", "mask", height=160)
                    mask_file = gr.File(label="Mask PNG (0 / 255)", interactive=False, elem_id="s4eca-mask-file")
                geotiff_file = gr.File(label="Mask GeoTIFF, for a georeferenced GeoTIFF input (its CRS and transform; "
                                       "1 object, 0 background, 255 nodata)", interactive=False, height=100,
                                       elem_id="s4eca-mask-geotiff")
                summary = gr.Markdown(elem_id="s4eca-summary")
                scale = picture("Language-guided scale weights", "scale-weights")
        explain_refused_uploads(gr, image)
        gate = picture("Language-guided spatial gate", "spatial-gate", height=2 * IMAGE_HEIGHT)
        gr.on(triggers=[submit.click, expression.submit], fn=run, inputs=[image, expression, threshold],
              outputs=[overlay, mask, scale, gate, mask_file, summary, geotiff_file], api_name="segment")
    return demo
