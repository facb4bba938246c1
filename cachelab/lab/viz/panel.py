"""ControlPanel: ipywidgets to build a cluster, break it, and watch every node's cache.

Every action (a button click, a slider move) runs in the kernel's main thread:
it changes the nodes, waits for them to settle, then sets the ``value`` of the
table and log widgets. The nodes' listener threads never touch a widget, which
is the ipywidgets guidance on threads: no output can land in another cell.

The log says what each action did on every node: which nodes a read reached (a
cut-off node is skipped), and what the counters say happened meanwhile ("b saw a
sequence gap and flushed"). On the simulator, a ``TraceViewer`` under the table
replays and animates each action as it is taken.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import ipywidgets as widgets

from cachelab.lab.viz.timeline import Event, pane
from cachelab.lab.viz.viewer import TraceViewer
from cachelab.stats import NodeStats

# The panel gates each pub/sub message on its way to each node. Server-assisted "tracking"
# has no such messages to gate (and fakeredis cannot track): notebook 09 shows it instead.
# The "stream" strategy reads a stream by cursor, which a gate that drops messages would
# misrepresent: the simulator shows it instead (Simulation(strategy="stream"), the blip
# scenario).
LIVE_STRATEGIES: tuple[str, ...] = ("none", "invalidate", "update")
SAFEGUARDS: tuple[str, ...] = (
    "fill_guard",
    "ordering",
    "tombstones",
    "gap_detection",
    "reconnect_flush",
)
"""The CacheNode switches the panel offers; each defaults to on (the safe setting)."""

_STATS = (
    "hits",
    "misses",
    "invalidations_received",
    "stale_fills_rejected",
    "gaps",
    "reconnects",
    "repair_kept",
    "repair_dropped",
    "flushes",
)
_STAT_TITLES = (
    "hits", "misses", "inval.", "fills rejected", "gaps", "reconn.", "kept", "dropped", "flushes"
)  # fmt: skip
COUNTER_NEWS: dict[str, str] = {
    "gaps": "{node} saw a sequence gap (a lost message): what it held waits for repair",
    "reconnects": "{node} resubscribed: what it held is checked against Redis (messages may "
    "have been lost)",
    "disconnects": "{node} was told its subscription dropped: it stops caching until it is back",
    "stale_fills_rejected": "{node} rejected {n} late fill(s): a newer change overtook the read",
    "messages_outdated": "{node} ignored {n} outdated message(s) (it knew a newer version)",
    "messages_invalid": "{node} dropped {n} malformed message(s)",
    "messages_forged": "{node} refused {n} forged message(s)",
    "resets": "{node} found Redis's counter started again (a new incarnation)",
    "suspected": "{node} stopped trusting {n} entr(ies) until repair checks them",
    "repair_checks": "{node} checked its suspects in {n} round trip(s)",
    "repair_kept": "{node}: repair kept {n} unchanged entr(ies), warm",
    "repair_dropped": "{node}: repair dropped {n} changed entr(ies)",
    "hook_errors": "{node}'s events hook failed {n} time(s)",
    "flushes": "{node} flushed its cache",
}
"""What a rise in a node counter means, for the log; other counters are named as they are."""
_QUIET = frozenset({"writes", "invalidations_received", "uncached_reads"})
_EXPLAINS_FLUSH = ("gaps", "reconnects")


class PanelBackend(Protocol):
    """What the panel drives: LiveCluster (real nodes) or the simulator's equivalent."""

    def names(self) -> list[str]:
        """The node names, in order."""
        ...

    def write(self, node: str, key: str, value: Any) -> int:
        """Write through ``node``; return the new version."""
        ...

    def read(self, node: str, key: str) -> Any:
        """Read ``key`` on ``node``."""
        ...

    def set_cut(self, node: str, cut: bool) -> None:
        """Cut ``node`` off from the messages, or heal it."""
        ...

    def drop_next(self, node: str) -> None:
        """Lose the next message on its way to ``node``."""
        ...

    def set_network(self, delay: float, loss: float) -> None:
        """Delay (seconds) and loss (0..1) of the messages."""
        ...

    def settle(self) -> bool:
        """Let every message in flight arrive; False if some node did not catch up."""
        ...

    def rows(self) -> list[dict[str, Any]]:
        """One dict per node: name, cache ``{key: (value, version)}``, stats, cut."""
        ...

    def store_version(self, key: str) -> int:
        """The version of ``key`` in Redis (0 when it was never written)."""
        ...

    @property
    def trace(self) -> list[Event]:
        """The events so far, for the animation."""
        ...

    def close(self) -> None:
        """Release the nodes."""
        ...


Factory = Callable[..., PanelBackend]
"""``factory(n=, strategy=, ttl=, **safeguards)`` builds a backend."""


class ControlPanel(widgets.VBox):  # type: ignore[misc]
    """Pick a cluster, act on it, and read every node's cache and counters in a table."""

    def __init__(
        self,
        factory: Factory | None = None,
        *,
        nodes: int = 3,
        strategy: str = "invalidate",
        key: str = "user:1",
        read_back: bool = True,
        delay_ms: float = 0.0,
        animate: bool = False,
    ) -> None:
        self._factory = factory or _live_factory()
        self.viewer: TraceViewer | None = TraceViewer() if animate else None
        self.backend: PanelBackend | None = None
        self.writes = 0
        self.nodes = widgets.IntSlider(value=nodes, min=1, max=6, description="nodes")
        self.strategy = widgets.Dropdown(
            options=list(LIVE_STRATEGIES), value=strategy, description="strategy"
        )
        self.safeguards = {
            name: widgets.Checkbox(value=True, description=name.replace("_", " "), indent=False)
            for name in SAFEGUARDS
        }
        self.ttl = widgets.FloatSlider(
            value=0.0, min=0.0, max=60.0, step=1.0, description="TTL (s)", tooltip="0 = no TTL"
        )
        self.delay = widgets.FloatSlider(
            value=delay_ms, min=0.0, max=200.0, step=1.0, description="delay (ms)"
        )
        self.loss = widgets.FloatSlider(value=0.0, min=0.0, max=1.0, step=0.05, description="loss")
        self.writer = widgets.Dropdown(description="write on")
        self.target = widgets.Dropdown(description="target")
        self.key = widgets.Text(value=key, description="key")
        self.read_back = widgets.Checkbox(
            value=read_back, indent=False, description="then read it on every node"
        )
        self.write_button = widgets.Button(
            description="write", button_style="primary", icon="pencil"
        )
        self.read_button = widgets.Button(description="read on every node", icon="eye")
        self.cut_button = widgets.ToggleButton(description="partition node", icon="chain-broken")
        self.drop_button = widgets.Button(
            description="drop next message", icon="times", button_style="danger"
        )
        self.table = widgets.HTML()
        self.journal = widgets.HTML()
        for button in (self.write_button, self.read_button, self.cut_button, self.drop_button):
            button.layout.width = "auto"  # never truncate a label
        for widget, name in ((self.write_button, "write"), (self.table, "table")):
            widget.add_class(f"cachelab-{name}")  # stable hooks for browser tests and CSS
        self._wire()
        super().__init__(self._layout())
        self.rebuild()

    # -- layout --------------------------------------------------------------

    def _layout(self) -> list[widgets.Widget]:
        """Three rows of controls, then the table and the log."""
        guards = widgets.HBox(list(self.safeguards.values()))
        return [
            widgets.HBox([self.nodes, self.strategy, self.ttl]),
            guards,
            widgets.HBox([self.delay, self.loss]),
            widgets.HBox([self.writer, self.key, self.read_back]),
            widgets.HBox([self.write_button, self.read_button]),
            widgets.HBox([self.target, self.cut_button, self.drop_button]),
            self.table,
            self.journal,
            *([self.viewer] if self.viewer is not None else []),
        ]

    def _wire(self) -> None:
        """Connect every control to its action."""
        for control in (self.nodes, self.strategy, self.ttl, *self.safeguards.values()):
            control.observe(self._on_rebuild, names="value")
        for control in (self.delay, self.loss):
            control.observe(self._on_network, names="value")
        self.target.observe(self._on_target, names="value")
        self.write_button.on_click(lambda _: self.write())
        self.read_button.on_click(lambda _: self.read_all())
        self.drop_button.on_click(lambda _: self.drop_next())
        self.cut_button.observe(self._on_cut, names="value")

    # -- actions -------------------------------------------------------------

    def rebuild(self, reason: str = "") -> None:
        """Replace the nodes with a fresh cluster as the controls describe it."""
        if self.backend is not None:
            self.backend.close()
        guards = {name: box.value for name, box in self.safeguards.items()}
        self.backend = self._factory(
            n=self.nodes.value, strategy=self.strategy.value, ttl=self.ttl.value or None, **guards
        )
        self._on_network(None)
        self.writes = 0
        names = self.backend.names()
        self.writer.options = names
        self.writer.value = names[0]
        self.target.options = names
        self.target.value = names[min(1, len(names) - 1)]
        self._show_cut()
        ready = f"{len(names)} {self.strategy.value} nodes ready, caches empty"
        self._done(f"{reason}: rebuilt, {ready}" if reason else ready)

    def write(self) -> int:
        """Write the next value of the key on the chosen node, settle, maybe read it back."""
        backend = self._backend()
        before = self._before()
        self.writes += 1
        key, node = self.key.value, self.writer.value
        version = backend.write(node, key, f"value {self.writes}")
        settled = backend.settle()
        what = f"{node} wrote {key} = 'value {self.writes}' at v{version}"
        if not settled:
            what += " (some node has not caught up)"
        if self.read_back.value:
            what += "; then " + self._read_everywhere(backend, key)
        self._done(what, before)
        return version

    def read_all(self) -> None:
        """Read the key on every node (hits serve the local copy, even a stale one)."""
        backend = self._backend()
        before = self._before()
        self._done(self._read_everywhere(backend, self.key.value), before)

    def drop_next(self) -> None:
        """Lose the next message on its way to the target node."""
        self._backend().drop_next(self.target.value)
        self._done(f"the next message to {self.target.value} will be lost")

    def partition(self, cut: bool) -> None:
        """Cut the target node off from the messages, or heal it."""
        self.cut_button.value = cut  # observing the toggle does the work

    def _read_everywhere(self, backend: PanelBackend, key: str) -> str:
        """Read ``key`` on every node not cut off; say who read which version."""
        cut = [row["name"] for row in backend.rows() if row["cut"]]
        readers = [name for name in backend.names() if name not in cut]
        for name in readers:
            backend.read(name, key)
        latest = backend.store_version(key)
        cached = {row["name"]: row["cache"].get(key) for row in backend.rows()}
        seen = [_seen(name, cached[name], latest) for name in readers]
        said = f"{', '.join(readers) or 'no node'} read {key}: {', '.join(seen) or '-'}"
        if cut:
            said += f" ({', '.join(cut)} cut off: skipped)"
        return said

    def _on_cut(self, change: dict[str, Any]) -> None:
        """The partition toggle moved."""
        backend, node, cut = self._backend(), self.target.value, bool(change["new"])
        before = self._before()
        backend.set_cut(node, cut)
        backend.settle()
        self._show_cut()
        self._done(f"{node} {'cut off from' if cut else 'reconnected to'} the messages", before)

    def _on_target(self, change: dict[str, Any]) -> None:
        """Another target: show its partition state."""
        self._show_cut()

    def _show_cut(self) -> None:
        """Set the partition toggle to the target's state, without acting on it."""
        if self.backend is None or self.target.value is None:
            return
        cut = {row["name"]: row["cut"] for row in self.backend.rows()}
        self.cut_button.unobserve(self._on_cut, names="value")
        self.cut_button.value = cut.get(self.target.value, False)
        self.cut_button.description = "heal node" if self.cut_button.value else "partition node"
        self.cut_button.observe(self._on_cut, names="value")

    def _on_rebuild(self, change: Any) -> None:
        """A setting that needs new nodes changed: say which, then rebuild."""
        self.rebuild(_change_text(change, self.safeguards))

    def _on_network(self, change: Any) -> None:
        """Delay or loss changed (the simulator replays the session under it)."""
        before = self._before() if change is not None else None
        self._backend().set_network(self.delay.value / 1000, self.loss.value)
        if change is not None:
            what = f"network: delay {self.delay.value:g} ms, loss {self.loss.value:.0%}"
            self._done(what, before, replay=True)

    def _backend(self) -> PanelBackend:
        """The current backend (there always is one after __init__)."""
        assert self.backend is not None
        return self.backend

    def _before(self) -> tuple[dict[str, dict[str, int]], int]:
        """The counters of every node, and the trace's length, before an action."""
        backend = self._backend()
        counters = {row["name"]: dict(row["stats"]) for row in backend.rows()}
        return counters, len(backend.trace) if self.viewer is not None else 0

    def _done(
        self, what: str, before: tuple[dict[str, Any], int] | None = None, replay: bool = False
    ) -> None:
        """Refresh the table, log the action and what the counters saw, animate it."""
        self.refresh()
        rows = self._backend().rows()
        news = _news(before[0], rows) if before is not None else []
        lines = [html.escape(what, quote=False)]
        lines += [f"&nbsp;&nbsp;↳ {html.escape(n, quote=False)}" for n in news]
        entries = (self.journal.value.split("<br>") if self.journal.value else [])[-10:]
        self.journal.value = "<br>".join([*entries, *lines])
        if self.viewer is not None:
            self._animate(0 if replay or before is None else before[1])

    def _animate(self, first: int) -> None:
        """Show the replayed session; play it from the first event the action added."""
        backend, viewer = self._backend(), self.viewer
        assert viewer is not None
        trace = list(backend.trace)
        carries = bool(getattr(backend, "carries_value", False))
        viewer.show([pane(trace, nodes=backend.names(), carries_value=carries)])
        if first < len(trace):
            fresh = trace[first:]
            viewer.play(min(getattr(e, "since", e.t) for e in fresh))

    def refresh(self) -> None:
        """Redraw the table of every node's cache and counters."""
        backend = self._backend()
        self.table.value = render_table(backend.rows(), backend.store_version)

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        """The live widget, and a snapshot of the table and log for pages without a kernel."""
        data: dict[str, Any] = super()._repr_mimebundle_(**kwargs)
        note = ("A live control panel: it needs a running kernel (cachelab lab). Its table and "
                "log as they were when this page was made:")
        parts = [f"<p><i>{note}</i></p>", self.table.value, f"<p>{self.journal.value}</p>"]
        if self.viewer is not None:
            parts.append(self.viewer.to_html())
        data["text/html"] = '<div class="cachelab-snapshot">' + "".join(parts) + "</div>"
        return data

    def close(self) -> None:
        """Stop the nodes."""
        if self.backend is not None:
            self.backend.close()
            self.backend = None


def _seen(name: str, entry: tuple[Any, int] | None, latest: int) -> str:
    """``a v2``, ``b v1 (stale)`` or ``c absent``."""
    if entry is None:
        return f"{name} not cached"
    version = entry[1]
    return f"{name} v{version}" + (" (stale)" if version < latest else "")


def _news(before: dict[str, dict[str, int]], rows: Sequence[dict[str, Any]]) -> list[str]:
    """A sentence for every counter that rose on a node during an action."""
    news = []
    for row in rows:
        old = before.get(row["name"], {})
        counters = [k for k in NodeStats.COUNTERS if k not in _QUIET]  # gauges never "rise"
        rises = {k: row["stats"].get(k, 0) - old.get(k, 0) for k in counters}
        rises = {k: n for k, n in rises.items() if n > 0}
        if any(k in rises for k in _EXPLAINS_FLUSH):
            rises.pop("flushes", None)
        for counter, n in rises.items():
            words = COUNTER_NEWS.get(counter, "{node}: " + counter.replace("_", " ") + " +{n}")
            news.append(words.format(node=row["name"], n=n))
    return news


def _change_text(change: Any, safeguards: dict[str, widgets.Checkbox]) -> str:
    """Which control changed, in words: ``fill guard switched off``."""
    if not isinstance(change, dict) or "owner" not in change:
        return ""
    owner, new = change["owner"], change["new"]
    for name, box in safeguards.items():
        if box is owner:
            return f"{name.replace('_', ' ')} switched {'on' if new else 'off'}"
    label = str(getattr(owner, "description", "setting"))
    return f"{label} set to {new}"


def render_table(rows: Sequence[dict[str, Any]], store_version: Callable[[str], int]) -> str:
    """An HTML table: one row per node, its cached ``key = value vN`` (stale in red), stats."""
    head = "".join(f"<th>{t}</th>" for t in ("node", "cache", *_STAT_TITLES))
    body = []
    for row in rows:
        cache = (
            "<br>".join(
                _cell(key, value, version, store_version(key))
                for key, (value, version) in sorted(row["cache"].items())
            )
            or "<i>empty</i>"
        )
        stats = "".join(f"<td>{row['stats'][name]}</td>" for name in _STATS)
        name = html.escape(row["name"]) + (" ✂ cut off" if row["cut"] else "")
        body.append(
            f'<tr data-node="{html.escape(row["name"])}"><td><b>{name}</b></td>'
            f'<td class="cache">{cache}</td>{stats}</tr>'
        )
    return (
        '<table class="cachelab-nodes" style="border-collapse:collapse" border="1" '
        f'cellpadding="4"><tr>{head}</tr>{"".join(body)}</table>'
    )


def _cell(key: str, value: Any, version: int, latest: int) -> str:
    """One cache entry; red when Redis has a newer version."""
    shown = f"{key} v{version}" if value is None else f"{key} = {value!r} v{version}"
    text = html.escape(shown)
    if version < latest:
        return f'<span style="color:#c00" title="Redis has v{latest}">{text} (stale)</span>'
    return text


def _live_factory(url: str | None = None) -> Factory:
    """Build LiveClusters (imported late: it starts threads and connects to Redis)."""
    from cachelab.lab.viz.live import LiveCluster

    def factory(**options: Any) -> PanelBackend:
        return LiveCluster(url=url, **options)

    return factory


def live_panel(url: str | None = None, **options: Any) -> ControlPanel:
    """A panel over real CacheNodes on fakeredis (``url=None``) or the Redis at ``url``."""
    return ControlPanel(_live_factory(url), **options)


def sim_panel(seed: int = 0, **options: Any) -> ControlPanel:
    """A panel over the simulator: virtual time, replayed after every action."""
    from cachelab.lab.viz.simulated import SimCluster

    def factory(**settings: Any) -> PanelBackend:
        return SimCluster(seed=seed, **settings)

    options.setdefault("delay_ms", 2.0)
    options.setdefault("animate", True)
    return ControlPanel(factory, **options)
