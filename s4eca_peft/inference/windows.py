"""Sliding windows over a large image, laid out, predicted and stitched the same way for `S4ECASegmenter` (an image
in memory) and `s4eca_peft.geo.predict_raster` (a raster read window by window).

A window's weight is 1 in its interior, rises as ``sin^2`` over the strip it shares with the previous window and falls
as ``cos^2`` over the strip it shares with the next one: in an overlap the two ramps add up to 1, so there is no seam.
The windows form a grid, so the summed weight is the outer product of the row and column sums: only the weighted sum
is buffered.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator, Sequence

import numpy as np

Box = tuple[int, int, int, int]  # (top, left, bottom, right) in scene pixels, bottom/right exclusive

MANY_WINDOWS = 64  # above this many windows for one image, a warning is given and progress is shown


def check_window_settings(max_side: int, tile_size: int | None, tile_overlap: float, batch_size: int) -> None:
    """A ValueError naming the first window setting out of range."""
    for name, value in (("max_side", max_side), ("tile_size", tile_size), ("batch_size", batch_size)):
        if value is not None and value <= 0:
            raise ValueError(f"{name} must be positive, got {value}.")
    if not 0.0 <= tile_overlap < 1.0:
        raise ValueError(f"tile_overlap must lie in [0, 1), got {tile_overlap}.")


def sliding_window_starts(length: int, window: int, overlap: float) -> list[int]:
    """Start offsets of windows of ``window`` pixels covering ``length`` pixels, overlapping by at least ``overlap``:
    the first starts at 0, the last ends at ``length``, the others are spread evenly (one window for a short side)."""
    if length <= window:
        return [0]
    stride = max(1, int(window * (1.0 - overlap)))
    count = math.ceil((length - window) / stride) + 1
    return [round(i * (length - window) / (count - 1)) for i in range(count)]


def cosine_ramp(length: int) -> np.ndarray:
    """``sin^2`` rising over ``length`` pixels, sampled at pixel centres: ``(length,)`` float32 in (0, 1)."""
    positions = (np.arange(length, dtype=np.float64) + 0.5) / max(length, 1)
    return (np.sin(0.5 * math.pi * positions) ** 2).astype(np.float32)


def axis_weights(starts: Sequence[int], window: int) -> list[np.ndarray]:
    """One ``(window,)`` weight profile per window start along an axis (starts in increasing order)."""
    profiles = []
    for index, start in enumerate(starts):
        profile = np.ones(window, dtype=np.float32)
        if index > 0 and (shared := starts[index - 1] + window - start) > 0:  # ramp up over the previous window
            profile[:shared] *= cosine_ramp(shared)
        if index + 1 < len(starts) and (shared := start + window - starts[index + 1]) > 0:  # down over the next
            profile[window - shared :] *= cosine_ramp(shared)[::-1]
        profiles.append(profile)
    return profiles


class WindowStitcher:
    """Accumulates weighted window probabilities and hands back each scene cell as soon as it is final.

    The window edges cut the scene into cells, each covered by a known set of windows; a cell is buffered from its
    first window to its last, so with windows fed in row-major order about one window plus the strip shared with the
    next row of windows is held, whatever the scene size.
    """

    @classmethod
    def covering(cls, height: int, width: int, tile_size: int, overlap: float) -> WindowStitcher:
        """Square windows of ``tile_size`` pixels covering a ``height x width`` image, overlapping by ``overlap``."""
        side_h, side_w = min(tile_size, height), min(tile_size, width)
        tops, lefts = sliding_window_starts(height, side_h, overlap), sliding_window_starts(width, side_w, overlap)
        return cls(tops, lefts, side_h, side_w)

    def __init__(self, tops: Sequence[int], lefts: Sequence[int], window_height: int, window_width: int) -> None:
        self.tops, self.lefts = list(tops), list(lefts)
        self.window_height, self.window_width = int(window_height), int(window_width)
        self.row_weights = axis_weights(self.tops, self.window_height)
        self.col_weights = axis_weights(self.lefts, self.window_width)
        self.ys = sorted({edge for top in self.tops for edge in (top, top + self.window_height)})
        self.xs = sorted({edge for left in self.lefts for edge in (left, left + self.window_width)})
        self.row_total = _profile_sum(self.tops, self.row_weights)
        self.col_total = _profile_sum(self.lefts, self.col_weights)
        self.expected = np.zeros((len(self.ys) - 1, len(self.xs) - 1), dtype=np.int32)
        for box in self.boxes():
            self.expected[self._cell_ranges(box)] += 1
        self._open: dict[tuple[int, int], list] = {}  # cell -> [weighted sum, windows seen]

    def boxes(self) -> list[Box]:
        """All windows, row-major: the order `add` expects for the memory bound (any order gives the same result)."""
        return [(top, left, top + self.window_height, left + self.window_width) for top in self.tops
                for left in self.lefts]

    def _cell_ranges(self, box: Box) -> tuple[slice, slice]:
        top, left, bottom, right = box
        return slice(self.ys.index(top), self.ys.index(bottom)), slice(self.xs.index(left), self.xs.index(right))

    def weights(self, box: Box) -> np.ndarray:
        """The ``(window_height, window_width)`` blending weight of ``box``."""
        return np.outer(self.row_weights[self.tops.index(box[0])], self.col_weights[self.lefts.index(box[1])])

    def add(self, box: Box, probabilities: np.ndarray) -> Iterator[tuple[Box, np.ndarray]]:
        """Add one window's ``(h, w)`` probabilities; yield each cell it completes with its blended probabilities."""
        top, left, bottom, right = box
        if probabilities.shape != (bottom - top, right - left):
            raise ValueError(f"window {box}: expected probabilities of shape {(bottom - top, right - left)}, "
                             f"got {probabilities.shape}.")
        weighted = probabilities.astype(np.float32) * self.weights(box)
        rows, cols = self._cell_ranges(box)
        for i in range(rows.start, rows.stop):
            for j in range(cols.start, cols.stop):
                y0, y1, x0, x1 = self.ys[i], self.ys[i + 1], self.xs[j], self.xs[j + 1]
                state = self._open.setdefault((i, j), [np.zeros((y1 - y0, x1 - x0), np.float32), 0])
                state[0] += weighted[y0 - top : y1 - top, x0 - left : x1 - left]
                state[1] += 1
                if state[1] == self.expected[i, j]:
                    del self._open[(i, j)]
                    yield (y0, x0, y1, x1), state[0] / np.outer(self.row_total[y0:y1], self.col_total[x0:x1])

    @property
    def open_pixels(self) -> int:
        """Pixels buffered in cells that received some but not all of their windows."""
        return sum(state[0].size for state in self._open.values())


def _profile_sum(starts: Sequence[int], profiles: Sequence[np.ndarray]) -> np.ndarray:
    """Summed weight along one axis: ``(last start + window,)`` float32."""
    total = np.zeros(starts[-1] + len(profiles[-1]), np.float32)
    for start, profile in zip(starts, profiles):
        total[start : start + len(profile)] += profile
    return total


def stitch_windows(stitcher: WindowStitcher, batch_size: int, predict: Callable[[list[Box]], Sequence[np.ndarray]],
                   warning: str) -> Iterator[tuple[Box, np.ndarray]]:
    """Predict the windows ``batch_size`` at a time (``predict``: boxes -> probabilities) and yield each scene cell
    with its blended probabilities once final; above `MANY_WINDOWS` windows, warn (``warning``) and show progress."""
    from tqdm.auto import tqdm

    boxes = stitcher.boxes()
    many = len(boxes) > MANY_WINDOWS
    if many:
        warnings.warn(warning.format(count=len(boxes)), stacklevel=3)
    for start in tqdm(range(0, len(boxes), batch_size), desc="windows", unit="batch", disable=not many):
        chunk = boxes[start : start + batch_size]
        for box, probabilities in zip(chunk, predict(chunk)):
            yield from stitcher.add(box, np.asarray(probabilities, dtype=np.float32))
