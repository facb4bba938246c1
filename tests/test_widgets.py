"""The control panel and the trace player, driven headlessly: click, set values, check nodes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import matplotlib
import pytest
import redis

matplotlib.use("Agg")

from cachelab.coherence import STRATEGIES
from cachelab.viz import ControlPanel, Event, TracePlayer, sim_panel
from cachelab.viz.live import LiveCluster
from cachelab.viz.panel import SAFEGUARDS
from cachelab.viz.simulated import SimCluster

PanelFactory = Callable[..., ControlPanel]


@pytest.fixture
def make_panel(client: redis.Redis) -> Iterator[PanelFactory]:
    """Panels over real nodes on ``client`` (fakeredis, then a real redis-server)."""
    panels: list[ControlPanel] = []

    def make(**options: Any) -> ControlPanel:
        panel = ControlPanel(lambda **o: LiveCluster(client=client, **o), **options)
        panels.append(panel)
        return panel

    yield make
    for panel in panels:
        panel.close()


def live(panel: ControlPanel) -> LiveCluster:
    """The panel's backend, as the LiveCluster it is in these tests."""
    assert isinstance(panel.backend, LiveCluster)
    return panel.backend


def cached(panel: ControlPanel, key: str = "user:1") -> dict[str, int | None]:
    """Each node's cached version of ``key`` (None when not cached)."""
    return {
        row["name"]: row["cache"][key][1] if key in row["cache"] else None
        for row in live(panel).rows()
    }


def stat(panel: ControlPanel, name: str) -> dict[str, int]:
    """One counter of every node."""
    return {row["name"]: row["stats"][name] for row in live(panel).rows()}


def toggled(panel: ControlPanel) -> bool:
    """Whether the partition toggle shows its target as cut off."""
    return bool(panel.cut_button.value)


def test_write_button_reaches_every_peer(make_panel: PanelFactory) -> None:
    panel = make_panel()
    panel.write_button.click()
    panel.write_button.click()
    assert cached(panel) == {"a": 2, "b": 2, "c": 2}
    assert "v2" in panel.table.value and "stale" not in panel.table.value
    assert "a wrote user:1 = 'value 2' at v2" in panel.journal.value


def test_write_without_read_back_evicts_the_peers(make_panel: PanelFactory) -> None:
    panel = make_panel(read_back=False)
    panel.read_button.click()
    panel.writer.value = "c"
    panel.write_button.click()
    assert cached(panel) == {"a": None, "b": None, "c": 1}
    assert stat(panel, "invalidations_received") == {"a": 1, "b": 1, "c": 0}


def test_update_strategy_pushes_the_value(make_panel: PanelFactory) -> None:
    panel = make_panel(read_back=False)
    panel.strategy.value = "update"
    panel.write_button.click()
    panel.read_button.click()
    panel.write_button.click()
    assert cached(panel) == {"a": 2, "b": 2, "c": 2}


def test_dropped_message_leaves_the_target_stale_without_sequence_checks(
    make_panel: PanelFactory,
) -> None:
    panel = make_panel()
    panel.safeguards["gap_detection"].value = False
    panel.write_button.click()
    assert panel.target.value == "b"
    panel.drop_button.click()
    panel.write_button.click()
    assert cached(panel) == {"a": 2, "b": 1, "c": 2}
    assert "(stale)" in panel.table.value
    assert live(panel).gates["b"].dropped == 1


def test_a_dropped_message_is_caught_by_the_settle_marker(make_panel: PanelFactory) -> None:
    panel = make_panel()
    panel.write_button.click()
    panel.drop_button.click()
    panel.write_button.click()  # the marker settle() sends carries seq 2; b handled only 1
    assert cached(panel) == {"a": 2, "b": 2, "c": 2}
    assert stat(panel, "gaps")["b"] == 1 and stat(panel, "repair_dropped")["b"] == 1
    assert live(panel).gates["b"].dropped == 1


@pytest.mark.parametrize("gap_detection", [True, False])
def test_the_next_message_reveals_the_gap(make_panel: PanelFactory, gap_detection: bool) -> None:
    panel = make_panel()
    panel.safeguards["gap_detection"].value = gap_detection
    panel.write_button.click()
    panel.drop_button.click()
    panel.write_button.click()  # v2 of user:1 never reaches b
    panel.key.value = "other"
    panel.write_button.click()  # v3, of another key: seq 3 after seq 1
    panel.key.value = "user:1"
    panel.read_button.click()
    assert cached(panel) == {"a": 2, "b": 2 if gap_detection else 1, "c": 2}
    assert stat(panel, "gaps")["b"] == int(gap_detection)


def test_partition_then_heal_flushes_the_node(make_panel: PanelFactory) -> None:
    panel = make_panel()
    panel.write_button.click()
    panel.target.value = "c"
    panel.cut_button.value = True
    assert panel.cut_button.description == "heal node"
    assert cached(panel) == {"a": 1, "b": 1, "c": None}
    assert stat(panel, "disconnects")["c"] == 1
    panel.write_button.click()
    assert cached(panel) == {"a": 2, "b": 2, "c": None}
    assert "cut off" in panel.table.value
    panel.target.value = "b"
    assert toggled(panel) is False
    panel.target.value = "c"
    assert toggled(panel) is True
    panel.partition(False)
    panel.read_button.click()
    assert cached(panel) == {"a": 2, "b": 2, "c": 2}
    assert stat(panel, "reconnects")["c"] == 1


@pytest.mark.parametrize("gap_detection", [True, False])
def test_total_loss_leaves_the_peers_stale_unless_markers_reveal_it(
    make_panel: PanelFactory, gap_detection: bool
) -> None:
    panel = make_panel()
    panel.safeguards["gap_detection"].value = gap_detection
    panel.write_button.click()
    panel.loss.value = 1.0
    panel.write_button.click()
    peers = 2 if gap_detection else 1
    assert cached(panel) == {"a": 2, "b": peers, "c": peers}
    assert all(gate.loss == 1.0 for gate in live(panel).gates.values())


def test_node_slider_across_its_range(make_panel: PanelFactory) -> None:
    panel = make_panel()
    for n in range(panel.nodes.min, panel.nodes.max + 1):
        panel.nodes.value = n
        assert len(live(panel).nodes) == n
        assert list(panel.writer.options) == live(panel).names()
        panel.write_button.click()
        assert set(cached(panel).values()) == {1}


def test_strategy_and_safeguards_rebuild_the_nodes(make_panel: PanelFactory) -> None:
    panel = make_panel(nodes=2)
    for name in STRATEGIES:
        panel.strategy.value = name
        assert all(node.strategy.name == name for node in live(panel).nodes)
    panel.strategy.value = "invalidate"
    for guard in SAFEGUARDS:
        panel.safeguards[guard].value = False
        assert live(panel).options[guard] is False
        panel.safeguards[guard].value = True
        assert live(panel).options[guard] is True
    assert live(panel).nodes[0].switches.fill_guard is True


def test_ttl_delay_and_loss_sliders_across_their_range(make_panel: PanelFactory) -> None:
    panel = make_panel(nodes=2)
    panel.ttl.value = panel.ttl.max
    assert live(panel).options["ttl"] == panel.ttl.max
    panel.ttl.value = 0.0
    assert live(panel).options["ttl"] is None
    for delay in (panel.delay.max, 50.0, 0.0):
        panel.delay.value = delay
        assert {g.delay for g in live(panel).gates.values()} == {delay / 1000}
    for loss in (panel.loss.max, 0.5, 0.0):
        panel.loss.value = loss
        assert {g.loss for g in live(panel).gates.values()} == {loss}
    panel.delay.value = 20.0
    panel.write_button.click()  # a delayed message still arrives before settle returns
    assert cached(panel) == {"a": 1, "b": 1}


def test_backend_trace_records_the_story(make_panel: PanelFactory) -> None:
    panel = make_panel(nodes=2)
    panel.write_button.click()
    kinds = [(e.node, e.kind) for e in live(panel).trace]
    assert ("a", "write") in kinds and ("b", "applied") in kinds and ("b", "fill") in kinds


def synthetic_trace() -> list[Event]:
    """a writes k; b gets the invalidation, c loses it and serves a stale read."""
    return [
        Event(0.000, "fill", "b", "k", 1),
        Event(0.000, "fill", "c", "k", 1),
        Event(0.001, "write", "a", "k", 2, since=0.0),
        Event(0.001, "fill", "a", "k", 2),
        Event(0.004, "deliver", "b", "k", 2, since=0.001),
        Event(0.004, "applied", "b", "k", 2),
        Event(0.005, "drop", "c", "k", 2, since=0.001),
        Event(0.006, "stale_read", "c", "k", 1),
    ]


def test_player_slider_steps_through_every_frame() -> None:
    player = TracePlayer(synthetic_trace())
    assert player.play.max == player.slider.max == len(player.frames) - 1
    seen = set()
    for i in range(player.slider.max + 1):
        player.slider.value = i
        png = bytes(player.image.value)
        assert png.startswith(b"\x89PNG")
        seen.add(png)
        assert f"t = {player.frames[i].t * 1000:.2f} ms" in player.caption.value
    assert len(seen) > len(player.frames) // 2
    player.slider.value = player.slider.max
    assert "c: stale read k v1" in player.caption.value
    assert player.frames[-1].caches == {"a": {"k": 2}, "b": {}, "c": {"k": 1}}


@pytest.fixture
def sim() -> Iterator[ControlPanel]:
    """A panel over the simulator (virtual time, no threads)."""
    panel = sim_panel(seed=1)
    yield panel
    panel.close()


def sim_cached(panel: ControlPanel, key: str = "user:1") -> dict[str, int | None]:
    """Each simulated node's cached version of ``key``."""
    assert isinstance(panel.backend, SimCluster)
    return {row["name"]: row["cache"].get(key, (None, None))[1] for row in panel.backend.rows()}


def test_sim_panel_write_drop_and_gap(sim: ControlPanel) -> None:
    sim.write_button.click()
    assert sim_cached(sim) == {"a": 1, "b": 1, "c": 1}
    sim.drop_button.click()
    sim.write_button.click()
    assert sim_cached(sim) == {"a": 2, "b": 1, "c": 2}
    assert "user:1 v1 (stale)" in sim.table.value
    sim.key.value = "other"
    sim.write_button.click()
    sim.key.value = "user:1"
    sim.read_button.click()
    assert sim_cached(sim) == {"a": 2, "b": 2, "c": 2}
    kinds = {(e.kind, e.node) for e in sim.backend.trace} if sim.backend else set()
    assert {("drop", "b"), ("gap", "b"), ("stale_read", "b")} <= kinds
    assert not any(kind == "partition" for kind, _ in kinds)  # the drop's stand-in is hidden


def test_sim_panel_partition_and_heal(sim: ControlPanel) -> None:
    sim.write_button.click()
    sim.target.value = "c"
    sim.partition(True)
    sim.write_button.click()
    assert sim_cached(sim) == {"a": 2, "b": 2, "c": 1}
    assert "cut off" in sim.table.value
    sim.partition(False)
    sim.key.value = "other"
    sim.write_button.click()  # the first message after healing shows c the gap
    sim.key.value = "user:1"
    sim.read_button.click()
    assert sim_cached(sim)["c"] == 2


def test_sim_panel_sliders_replay_the_session(sim: ControlPanel) -> None:
    sim.write_button.click()
    sim.write_button.click()
    assert sim_cached(sim) == {"a": 2, "b": 2, "c": 2}
    sim.loss.value = 1.0  # the same session, had every message been lost
    assert sim_cached(sim) == {"a": 2, "b": 1, "c": 1}
    sim.loss.value = 0.0
    sim.delay.value = sim.delay.max  # the read-backs now run before the invalidations land
    assert sim_cached(sim) == {"a": 2, "b": None, "c": None}
    assert sim.backend is not None
    assert {e.node for e in sim.backend.trace if e.kind == "stale_read"} == {"b", "c"}
    sim.delay.value = sim.delay.min
    assert sim_cached(sim) == {"a": 2, "b": 2, "c": 2}
    for n in range(sim.nodes.min, sim.nodes.max + 1):
        sim.nodes.value = n
        sim.write_button.click()
        assert set(sim_cached(sim).values()) == {1} and len(sim_cached(sim)) == n
    sim.strategy.value = "none"
    sim.read_button.click()
    sim.write_button.click()
    assert sim_cached(sim)["b"] == 0  # no messages: b still trusts the absence it read


def test_player_over_a_panel_session(sim: ControlPanel) -> None:
    sim.write_button.click()
    sim.drop_button.click()
    sim.write_button.click()
    assert sim.backend is not None
    player = TracePlayer(sim.backend.trace)
    kinds = [(d.dst, f.t) for f in player.frames for d in f.drops]
    assert kinds and all(dst == "b" for dst, _ in kinds)
    assert any(f.stale for f in player.frames)
