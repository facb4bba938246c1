"""``cachelab demo``: nodes, writes going on, their subscriptions killed midway, and a live table.

Each step one node (in turn) writes the watched key and one other, and every node reads
them. Halfway, every pub/sub connection is killed (``CLIENT KILL TYPE pubsub``). On a
real server the nodes see the connection drop at once; on the embedded fakeredis they go
deaf without an error, as over a half-open TCP connection, and only their heartbeat's
missing echo tells them. Either way the table shows them stop trusting their copies
(coherent: no), reconnect, and repair. On a terminal the table is redrawn in place with
plain ANSI escape codes; elsewhere (a pipe, a test, ``--plain``) each step prints a table.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TextIO

from cachelab.backends import connect, redact
from cachelab.cluster import node_names
from cachelab.coherence import strategy_for
from cachelab.harness.livefaults import Target, kill_pubsub
from cachelab.harness.nodeclient import LocalNode, NodeLink, node_options, start_processes
from cachelab.harness.runner import settle

WATCHED = "hot"
"""The key whose value and version each node holds is shown."""
HEARTBEAT = 0.2
"""The nodes' heartbeat (seconds): a deaf subscription is caught within a few of them."""
COLUMNS = (
    "node",
    "coherent",
    "hits",
    "misses",
    "invalidations",
    "reconnects",
    "repairs",
    f"{WATCHED} @ version",
)
UP_AND_CLEAR = "\x1b[{n}F\x1b[J"
"""ANSI: cursor up ``n`` lines to their start, then clear to the end of the screen."""


@dataclass(frozen=True)
class DemoConfig:
    """What ``cachelab demo`` was asked to do."""

    url: str | None = None
    nodes: int = 3
    seconds: float = 10.0
    steps: int | None = None  # default: four a second
    plain: bool = False
    strategy: str = "invalidate"

    @property
    def step_count(self) -> int:
        """How many steps the demo takes."""
        return self.steps if self.steps is not None else max(2, round(self.seconds * 4))


class Screen:
    """Writes frames: in place on a terminal (``live``), one after another elsewhere."""

    def __init__(self, out: TextIO, live: bool) -> None:
        self.out = out
        self.live = live
        self._height = 0

    def show(self, lines: Sequence[str]) -> None:
        """Draw one frame."""
        if self.live and self._height:
            self.out.write(UP_AND_CLEAR.format(n=self._height))
        self.out.write("\n".join(lines) + "\n")
        if not self.live:
            self.out.write("\n")
        self.out.flush()
        self._height = len(lines)


def table(rows: Sequence[Sequence[str]]) -> list[str]:
    """``COLUMNS`` and ``rows`` as aligned text lines."""
    cells = [COLUMNS, *rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(COLUMNS))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in cells
    ]


def row(node: NodeLink) -> list[str]:
    """One node's line: its counters and its copy of the watched key."""
    stats = node.call({"cmd": "stats"})
    s = stats["stats"]
    held = node.call({"cmd": "snapshot", "keys": [WATCHED]})["entries"].get(WATCHED)
    watched = "-" if held is None else f"{held[0]} @ {held[1]}"
    return [
        node.name,
        "yes" if stats["coherent"] else "NO",
        str(s["hits"]),
        str(s["misses"]),
        str(s["invalidations_received"]),
        str(s["reconnects"]),
        str(s["repair_checks"]),
        watched,
    ]


def step(nodes: Sequence[NodeLink], number: int) -> str:
    """One step of work: a node writes the watched key and another; everyone reads both."""
    writer = nodes[number % len(nodes)]
    other = f"k{number % 5}"
    writer.call({"cmd": "set", "key": WATCHED, "value": f"s{number}"})
    writer.call({"cmd": "set", "key": other, "value": number})
    for node in nodes:
        node.call({"cmd": "read", "keys": [WATCHED, *(f"k{i}" for i in range(5))]})
    return f"{writer.name} wrote {WATCHED}=s{number}"


def run_demo(config: DemoConfig, out: TextIO) -> int:
    """Play the demo; every node (and process) is closed on the way out."""
    with contextlib.ExitStack() as stack:
        nodes = _start(config, stack)
        admin = connect(config.url)
        stack.callback(admin.close)
        screen = Screen(out, live=not config.plain and out.isatty())
        out.write(header(config) + "\n")
        _play(nodes, config, Target(admin), screen)
        own_marker = strategy_for(config.strategy).own_marker
        settled = settle(nodes, own_marker, timeout=10.0)
        read = {json.dumps(node.call({"cmd": "get", "key": WATCHED})["value"]) for node in nodes}
        agree = len(read) == 1  # what each would serve now, cached or not
        rows = [row(node) for node in nodes]
        screen.show(
            [
                f"after settle: {'settled' if settled else 'NOT settled'}; every node "
                f"reads the same {WATCHED}: {'yes' if agree else 'no'}",
                *table(rows),
            ]
        )
    return 0


def _start(config: DemoConfig, stack: contextlib.ExitStack) -> list[NodeLink]:
    """The nodes: in this process on the embedded fakeredis, or processes on ``url``."""
    namespace = f"demo-{secrets.token_hex(4)}"
    options = [
        node_options(name, namespace, config.strategy, heartbeat=HEARTBEAT)
        for name in node_names(config.nodes)
    ]
    nodes: list[NodeLink]
    if config.url is None:
        nodes = []
        for each in options:
            nodes.append(LocalNode(None, each))
            stack.callback(nodes[-1].close)
        return nodes
    nodes = list(start_processes(config.url, options))
    for node in nodes:
        stack.callback(node.close)
    return nodes


def _play(nodes: list[NodeLink], config: DemoConfig, target: Target, screen: Screen) -> None:
    """Every step, the kill halfway, a frame after each."""
    count = config.step_count
    interval = config.seconds / count
    started = time.monotonic()
    for number in range(1, count + 1):
        news = step(nodes, number)
        if number == count // 2:
            kill_pubsub(target)
            news += "; KILLED every pub/sub connection"
        title = f"step {number}/{count}  t={time.monotonic() - started:5.2f}s  {news}"
        screen.show([title, *table([row(node) for node in nodes])])
        time.sleep(max(0.0, started + number * interval - time.monotonic()))


def header(config: DemoConfig) -> str:
    """The demo's first line: what runs where."""
    where = "the embedded fakeredis, in this process" if config.url is None else redact(config.url)
    return (
        f"cachelab demo: {config.nodes} {config.strategy} nodes on {where}, "
        f"{config.step_count} steps over {config.seconds:g}s; the kill comes at step "
        f"{config.step_count // 2}"
    )
