"""TracePlayer: ipywidgets ``Play`` and a slider stepping through the frames of a trace.

Each slider change re-renders one frame to PNG and sets it as an ``Image`` widget's
value. Nothing prints into an Output widget, and every update runs in the kernel's
main thread (a widget callback), so no picture can land in the wrong cell.
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from typing import Any

import ipywidgets as widgets

from cachelab.viz.animation import _frames, render_png
from cachelab.viz.frames import Frame


class TracePlayer(widgets.VBox):  # type: ignore[misc]
    """A live player of a trace: Play, a frame slider, the picture and a caption."""

    def __init__(self, trace: Iterable[Any], *, interval: int = 400, **options: Any) -> None:
        self.frames: list[Frame] = _frames(trace, **options)
        last = len(self.frames) - 1
        self.play = widgets.Play(
            value=0, min=0, max=last, step=1, interval=interval, description="play"
        )
        self.slider = widgets.IntSlider(
            value=0, min=0, max=last, description="frame", continuous_update=True
        )
        widgets.jslink((self.play, "value"), (self.slider, "value"))
        self.image = widgets.Image(format="png")
        self.caption = widgets.HTML()
        self._pngs: dict[int, bytes] = {}
        self.slider.observe(self._on_frame, names="value")
        super().__init__([widgets.HBox([self.play, self.slider]), self.image, self.caption])
        self.show(0)

    def _on_frame(self, change: dict[str, Any]) -> None:
        """Slider moved (by hand or by Play): show that frame."""
        self.show(int(change["new"]))

    def show(self, index: int) -> None:
        """Render frame ``index`` into the image and the caption."""
        if index not in self._pngs:
            self._pngs[index] = render_png(self.frames[index])
        self.image.value = self._pngs[index]
        frame = self.frames[index]
        text = html.escape(frame.caption).replace("\n", "<br>")
        self.caption.value = f"<code>t = {frame.t * 1000:.2f} ms</code><br><small>{text}</small>"
