"""TraceViewer: traces drawn in SVG and driven by time (play, pause, step, scrub, speed).

It is an anywidget: with a kernel, Python can drive it (``step``, ``seek``, ``play``,
or a new trace from the simulator panel) and read where it is. Every display also
carries a self-contained HTML copy (the same JavaScript inlined, no CDN), so it
plays in an exported notebook with no kernel and no internet.
"""

from __future__ import annotations

import html
import json
import secrets
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import anywidget
import traitlets

from cachelab.lab.viz.timeline import pane, stops

STATIC = Path(__file__).resolve().parent / "static"
_ESM = (STATIC / "viewer.js").read_text(encoding="utf-8")


class TraceViewer(anywidget.AnyWidget):
    """One or more traces (panes) on one clock; ``TraceViewer(trace)`` for the usual case."""

    _esm = _ESM
    panes: traitlets.List[dict[str, Any]] = traitlets.List().tag(sync=True)
    stops: traitlets.List[float] = traitlets.List().tag(sync=True)
    time = traitlets.Float(0.0).tag(sync=True)
    playing = traitlets.Bool(False).tag(sync=True)
    speed = traitlets.Float(1.0).tag(sync=True)
    selected: traitlets.List[int] = traitlets.List().tag(sync=True)

    def __init__(self, trace: Iterable[Any] | None = None, **options: Any) -> None:
        super().__init__()
        self.add_class("cachelab-viewer")
        if trace is not None:
            self.show([pane(trace, **options)])

    def show(self, panes: Sequence[dict[str, Any]], at: float | None = None) -> None:
        """Replace the traces; the clock goes to ``at`` (default: the start)."""
        self.playing = False
        self.selected = []
        self.stops = stops(panes)
        self.panes = list(panes)
        self.time = self.start if at is None else at

    @property
    def start(self) -> float:
        """The earliest time any pane draws (a message's send time, or an event's)."""
        times = [row.get("since", row["t"]) for p in self.panes for row in p["events"]]
        return min(times, default=0.0)

    @property
    def end(self) -> float:
        """The time of the last event."""
        return max((row["t"] for p in self.panes for row in p["events"]), default=0.0)

    def step(self, count: int = 1) -> None:
        """Move ``count`` events forward (negative: back), pausing playback."""
        self.playing = False
        self.selected = []
        if count >= 0:
            ahead = [s for s in self.stops if s > self.time + 1e-12]
            self.time = ahead[min(count, len(ahead)) - 1] if ahead and count else self.time
        else:
            behind = [s for s in self.stops if s < self.time - 1e-12]
            self.time = behind[max(count, -len(behind))] if behind else self.start

    def seek(self, t: float) -> None:
        """Put the clock at ``t`` (clamped to the traces)."""
        self.selected = []
        self.time = min(max(t, self.start), self.end)

    def play(self, at: float | None = None) -> None:
        """Start playing, from ``at`` if given."""
        if at is not None:
            self.seek(at)
        self.playing = True

    def pause(self) -> None:
        """Stop playing where it is."""
        self.playing = False

    def current(self, index: int = 0) -> dict[str, Any] | None:
        """Pane ``index``'s event at the clock (the selected one, if any), or None."""
        if len(self.selected) == 2 and self.selected[0] == index:
            return dict(self.panes[index]["events"][self.selected[1]])
        events = self.panes[index]["events"] if self.panes else []
        past = [row for row in events if row["t"] <= self.time]
        return dict(past[-1]) if past else None

    def select(self, index: int, event: int) -> dict[str, Any]:
        """Click event ``event`` of pane ``index``: the clock jumps there; return the event."""
        self.playing = False
        row = self.panes[index]["events"][event]
        self.time = row["t"]
        self.selected = [index, event]
        return dict(row)

    def to_html(self) -> str:
        """A self-contained HTML fragment that plays the same traces without a kernel.

        It opens where the clock is, or at the start if it was playing (nobody chose
        that moment).
        """
        at = self.start if self.playing else self.time
        state = {"panes": self.panes, "stops": self.stops, "time": at,
                 "playing": False, "speed": self.speed, "selected": []}
        target = f"clv-{secrets.token_hex(6)}"
        return (
            f'<div class="cachelab-viewer cachelab-static" id="{target}">'
            f"<noscript>{html.escape(self._summary())}</noscript></div>\n"
            '<script type="module">\n'
            f"const code = {_script_json(_ESM)};\n"
            'const url = URL.createObjectURL(new Blob([code], {type: "text/javascript"}));\n'
            "const viewer = (await import(url)).default;\n"
            f'viewer.mount(document.getElementById("{target}"), {_script_json(state)});\n'
            "</script>"
        )

    def _summary(self) -> str:
        """The panes' titles and verdicts, for a page without JavaScript."""
        return "; ".join(f"{p['title']} {p['verdict']}".strip() for p in self.panes)

    def _repr_mimebundle_(self, **kwargs: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        bundle = super()._repr_mimebundle_(**kwargs)
        assert bundle is not None  # a view is always named
        data, metadata = bundle
        data["text/html"] = self.to_html()
        return data, metadata


def _script_json(value: Any) -> str:
    """JSON that is safe inside a <script> element."""
    text = json.dumps(value, separators=(",", ":"))
    return text.replace("</", "<\\/").replace("<!--", "<\\!--")
