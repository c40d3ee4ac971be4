"""Pictures of the selection maps, drawn with matplotlib's object API (no pyplot: server threads can draw at once)."""

from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image


def _render(figure) -> Image.Image:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return Image.open(buffer).convert("RGB")


def scale_weights_picture(weights: dict[str, np.ndarray], branch_labels: list[str],
                          title: str = "language-guided scale weights") -> Image.Image:
    """A heatmap of each adapted block's (row) softmax weight per extractor branch (column), mean over channels."""
    from matplotlib.figure import Figure

    if not weights:
        raise ValueError("No scale weights to draw: the adapter has scale selection switched off.")
    labels = list(weights)
    table = np.stack([np.asarray(weights[label]).mean(axis=-1) for label in labels])  # (blocks, n_branches)
    if table.shape[1] != len(branch_labels):
        raise ValueError(f"Got {table.shape[1]} branches but {len(branch_labels)} branch labels.")
    figure = Figure(figsize=(1.6 + 0.9 * len(branch_labels), 1.2 + 0.35 * len(labels)), layout="constrained")
    axes = figure.add_subplot()
    image = axes.imshow(table, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    axes.set_xticks(range(len(branch_labels)), branch_labels)
    axes.set_yticks(range(len(labels)), labels, fontsize=8)
    for (row, column), value in np.ndenumerate(table):
        axes.text(column, row, f"{value:.2f}", ha="center", va="center", fontsize=7,
                  color="black" if value > 0.6 else "white")
    axes.set_xlabel("extractor branch")
    axes.set_title(title, fontsize=10)
    figure.colorbar(image, ax=axes, fraction=0.08)
    return _render(figure)


def spatial_gate_picture(gates: dict[str, np.ndarray], image: np.ndarray | None = None,
                         title: str = "language-guided spatial gate") -> Image.Image:
    """One panel per adapted block with its gate ``(H, W)`` in (0, 1) (bright: kept), over ``image`` when given."""
    from matplotlib.figure import Figure

    if not gates:
        raise ValueError("No spatial gates to draw: the adapter has spatial selection switched off.")
    columns = min(4, len(gates))
    rows = math.ceil(len(gates) / columns)
    figure = Figure(figsize=(2.4 * columns + 0.6, 2.4 * rows + 0.5), layout="constrained")
    extent = None if image is None else (0, image.shape[1], image.shape[0], 0)
    for index, (label, gate) in enumerate(gates.items()):
        axes = figure.add_subplot(rows, columns, index + 1)
        if image is not None:
            axes.imshow(image, extent=extent)
        shown = axes.imshow(gate, cmap="magma", vmin=0.0, vmax=1.0, alpha=0.65 if image is not None else 1.0,
                            extent=extent, interpolation="nearest")
        axes.set_title(f"{label} ({gate.shape[0]}x{gate.shape[1]})", fontsize=8)
        axes.set_axis_off()
    figure.suptitle(title, fontsize=10)
    figure.colorbar(shown, ax=figure.axes, fraction=0.03)
    return _render(figure)
