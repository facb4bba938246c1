"""The control panel and the trace viewer, driven headlessly: click, set values, check nodes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import matplotlib
import pytest
import redis

matplotlib.use("Agg")

from cachelab.lab.viz import ControlPanel, Event, TraceViewer, side_by_side, sim_panel
from cachelab.lab.viz.live import LiveCluster
from cachelab.lab.viz.panel import LIVE_STRATEGIES, SAFEGUARDS
from cachelab.lab.viz.simulated import SimCluster
from cachelab.sim.scenarios import CATALOGUE

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


def test_live_log_names_the_skipped_node_and_the_gap(make_panel: PanelFactory) -> None:
    panel = make_panel()
    panel.write_button.click()
    panel.drop_button.click()
    panel.write_button.click()
    panel.key.value = "other"
    panel.write_button.click()
    gap = "b saw a sequence gap (a lost message): what it held waits for repair"
    assert gap in panel.journal.value
    panel.target.value = "c"
    panel.cut_button.value = True
    panel.key.value = "user:1"
    panel.read_button.click()
    assert panel.journal.value.endswith("(c cut off: skipped)")
    assert "every node" not in panel.journal.value


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
    assert set(panel.strategy.options) == set(LIVE_STRATEGIES)
    for name in panel.strategy.options:
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


def test_viewer_steps_scrubs_and_explains() -> None:
    viewer = TraceViewer(synthetic_trace(), nodes=["a", "b", "c"])
    assert viewer.stops == [0.0, 0.001, 0.004, 0.005, 0.006]
    assert viewer.time == viewer.start == 0.0
    viewer.step()
    assert viewer.time == 0.001
    viewer.step(3)
    current = viewer.current()
    assert viewer.time == 0.006 and current is not None and current["kind"] == "stale_read"
    viewer.step(-2)
    assert viewer.time == 0.004
    viewer.seek(99.0)
    assert viewer.time == viewer.end == 0.006
    clicked = viewer.select(0, 6)  # the lost message
    assert viewer.time == 0.005 and clicked["kind"] == "drop"
    assert "never reached c" in clicked["why"] and viewer.current() == clicked
    viewer.play(at=0.0)
    assert viewer.playing and viewer.time == 0.0 and viewer.selected == []


def test_viewer_exports_a_self_contained_player() -> None:
    trace = [*synthetic_trace(), Event(0.007, "garbage", "b", detail="</script><b>")]
    viewer = TraceViewer(trace)
    data, _ = viewer._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in data
    page = data["text/html"]
    assert page.count("</script>") == 1  # the detail cannot close the script early
    fetched = page.replace("http://www.w3.org/2000/svg", "")  # a namespace name, never fetched
    assert "http://" not in fetched and "https://" not in fetched  # plays offline
    assert '"kind":"garbage"' in page and "export default" in page
    viewer.seek(0.004)
    assert '"time":0.004' in viewer.to_html()  # opens where the clock was put
    viewer.play()
    assert '"time":0.0,' in viewer.to_html()  # caught mid-play: opens at the start


def test_broken_and_fixed_side_by_side_for_every_scenario() -> None:
    for scenario in CATALOGUE.values():
        viewer = side_by_side(scenario)
        left, right = viewer.panes
        assert left["title"].startswith("BROKEN") and right["title"].startswith("FIXED")
        assert (left["ok"], right["ok"]) == (False, True), scenario.name
        assert "kept" in right["verdict"] or scenario.fixed.bound is None
    assert viewer.stops == sorted(set(viewer.stops))


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


def test_sim_panel_animates_each_action(sim: ControlPanel) -> None:
    viewer = sim.viewer
    assert viewer is not None
    sim.write_button.click()
    first = len(viewer.panes[0]["events"])
    assert viewer.playing and viewer.time == 0.0
    sim.drop_button.click()
    sim.write_button.click()
    rows = viewer.panes[0]["events"]
    assert len(rows) > first and viewer.playing
    new = rows[first:]
    assert viewer.time == min(r.get("since", r["t"]) for r in new)  # plays the new part
    lost = [r for r in rows if r["kind"] == "drop"]
    assert [(r["node"], r["detail"]) for r in lost] == [("b", "dropped")]
    assert "(partition)" not in " ".join(r["head"] for r in rows)


def tickets(viewer: TraceViewer) -> set[float]:
    """How long each delivered message took, in ms."""
    rows = viewer.panes[0]["events"]
    return {round((r["t"] - r["since"]) * 1000, 3) for r in rows if r["kind"] == "deliver"}


def test_moving_the_delay_replays_the_session_visibly(sim: ControlPanel) -> None:
    viewer = sim.viewer
    assert viewer is not None
    sim.write_button.click()
    assert tickets(viewer) == {2.0}
    viewer.pause()
    sim.delay.value = 50.0
    assert tickets(viewer) == {50.0} and viewer.playing and viewer.time == viewer.start
    assert "network: delay 50 ms" in sim.journal.value


def test_the_log_says_who_read_and_what_the_nodes_noticed(sim: ControlPanel) -> None:
    sim.write_button.click()
    sim.target.value = "b"
    sim.partition(True)
    sim.read_button.click()
    last = sim.journal.value.split("<br>")[-1]
    assert last == "a, c read user:1: a v1, c v1 (b cut off: skipped)"
    sim.partition(False)
    sim.drop_button.click()
    sim.write_button.click()
    sim.key.value = "other"
    sim.write_button.click()
    gap = "b saw a sequence gap (a lost message): what it held waits for repair"
    assert gap in sim.journal.value
    assert "entries" not in sim.journal.value  # a gauge, not news
    sim.safeguards["fill_guard"].value = False
    assert sim.journal.value.endswith("fill guard switched off: rebuilt, 3 invalidate nodes ready, "
                                      "caches empty")


