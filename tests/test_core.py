"""The protocol core on its own, phase by phase: no thread, no store, no clock but ours."""

from __future__ import annotations

from typing import Any

import pytest

from cachelab.coherence import strategy_for
from cachelab.contract import Meta, Reply, Stamp
from cachelab.core import NodeCore, ReentrantLoad, Switches
from cachelab.errors import CachelabError
from cachelab.link import CoreMisuse, Link
from cachelab.local import LocalStore
from cachelab.messages import Message
from cachelab.messages import value_digest as _digest
from cachelab.sequence import Sequencer, Verdict

INC = "inc-1"


def core(strategy: str = "invalidate", **switches: bool) -> NodeCore:
    """A subscribed core at (INC, seq 10)."""
    node = NodeCore("me#1", strategy_for(strategy), LocalStore(100), Switches(**switches), True)
    node.subscribed(True, Meta(INC, 10))
    node.handle(msg(10, key="warm-up"))  # the subscription has delivered up to 10
    node.take_events()
    return node


def msg(seq: int, key: str = "k", inc: str = INC, op: str = "inv", src: str = "peer#1") -> Message:
    return Message("ns", op, key, src, seq, inc=inc)


def fill(node: NodeCore, key: str, value: object, version: int) -> None:
    ticket = node.open(key, True, owner=1)
    node.loaded(ticket, Reply(b"x", version, INC, version), value, 0.0)
    node.guard_fill(ticket)


# -- the sequencer's verdicts ------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "meta", "verdict"),
    [
        (msg(11), Meta(INC, 11), Verdict.IN_ORDER),
        (msg(13), Meta(INC, 13), Verdict.GAP),  # 11 and 12 were lost
        (msg(13), Meta(INC, 11), Verdict.FORGED),  # a number the store never issued
        (msg(9), Meta(INC, 12), Verdict.REPLAYED),  # received already (see received=10)
        (msg(3, inc="other"), Meta(INC, 12), Verdict.FORGED),  # the store never had it
        (msg(3, inc="inc-2"), Meta("inc-2", 3), Verdict.RESET),
        (msg(30, inc="inc-0"), Meta(INC, 12), Verdict.RETIRED),  # late, from before a reset
    ],
)
def test_message_verdicts(message: Message, meta: Meta, verdict: Verdict) -> None:
    seq = Sequencer(inc=INC, last=10, received=10, retired=("inc-0",))
    assert seq.message_verdict(message, meta) is verdict


@pytest.mark.parametrize(
    ("marker_seq", "meta", "verdict"),
    [
        (10, Meta(INC, 12), Verdict.IN_ORDER),
        (11, Meta(INC, 12), Verdict.GAP),  # 11 was published before the marker, never seen
        (12, Meta(INC, 11), Verdict.FORGED),
        (8, Meta(INC, 12), Verdict.OVERRUN),  # we handled 9 and 10 before a marker at 8
        (10, Meta("inc-2", 0), Verdict.RESET),
    ],
)
def test_marker_verdicts(marker_seq: int, meta: Meta, verdict: Verdict) -> None:
    seq = Sequencer(inc=INC, last=10, received=10)
    marker = msg(marker_seq, op="beat") if marker_seq else msg(0, op="beat")
    assert seq.marker_verdict(marker, meta) is verdict


def test_an_unordered_bus_does_not_take_a_repeated_number_for_a_forgery() -> None:
    seq = Sequencer(ordered=False, inc=INC, last=10, received=10)
    assert seq.trusted(msg(7)) and not Sequencer(inc=INC, last=10, received=10).trusted(msg(7))


# -- repair racing the rest, driven phase by phase ----------------------------------------


def test_a_write_during_a_repair_round_trip_wins_over_the_repair_answer() -> None:
    node = core()
    fill(node, "k", "old", 5)
    assert node.handle(msg(12, "other")) is True  # a jump: ask the store
    node.answer(msg(12, "other"), Meta(INC, 12))  # a real gap: everything is suspect
    batch = node.repair_batch(10)
    assert batch is not None and batch.keys == ["k"]
    ticket = node.open("k", False, owner=1)  # our own write lands meanwhile
    node.wrote(ticket, "mine", Stamp(13, INC))
    node.repaired(batch, [_digest("old")], Meta(INC, 13), [(5, _digest("old"))])
    assert node.local.get("k") == ("mine", 13)  # the stale answer did not bring "old" back
    assert node.counts["repair_kept"] == 0


def test_a_repair_answer_older_than_a_second_gap_is_thrown_away() -> None:
    node = core()
    fill(node, "k", "old", 5)
    node.answer(msg(12, "other"), Meta(INC, 12))
    batch = node.repair_batch(10)
    assert batch is not None
    node.answer(msg(20, "other"), Meta(INC, 20))  # another loss while the batch was on its way
    node.repaired(batch, [_digest("old")], Meta(INC, 20), [(5, _digest("old"))])
    assert node.local.get("k") is None and "k" in node.local.suspects
    again = node.repair_batch(10)
    assert again is not None and again.keys == ["k"]  # checked again, after the second gap


def test_repair_keeps_only_what_the_store_confirms_by_digest() -> None:
    node = core()
    fill(node, "same", "v", 5)
    fill(node, "changed", "v", 6)
    fill(node, "gone", "v", 7)
    node.answer(msg(12, "other"), Meta(INC, 12))
    batch = node.repair_batch(10)
    assert batch is not None
    answers = [(5, _digest("v")), (11, _digest("w")), (12, "")]
    node.repaired(batch, [_digest("v")] * 3, Meta(INC, 12), answers)
    assert node.local.get("same") == ("v", 5)
    assert node.local.get("changed") is None and node.local.floor("changed") == 11
    assert node.local.get("gone") is None
    assert (node.counts["repair_kept"], node.counts["repair_dropped"]) == (1, 2)


def test_a_reset_found_by_repair_forgets_floors_and_suspects_again() -> None:
    node = core()
    fill(node, "k", "v", 5)
    node.local.invalidate("x", 9)  # a floor
    node.answer(msg(12, "other"), Meta(INC, 12))
    batch = node.repair_batch(10)
    assert batch is not None
    node.repaired(batch, [_digest("v")], Meta("inc-2", 0), [(0, _digest("v"))])
    assert node.counts["resets"] == 1 and node.seq.inc == "inc-2"
    assert node.local.floor("x") == 0 and "k" in node.local.suspects


def test_a_read_reply_from_another_incarnation_resets_and_is_not_filled() -> None:
    node = core()
    fill(node, "a", 1, 5)
    ticket = node.open("b", True, owner=1)
    node.loaded(ticket, Reply(b"x", 3, "inc-2", 3), 2, 0.0)
    node.guard_fill(ticket)
    assert node.counts["resets"] == 1 and node.seq.inc == "inc-2"
    assert node.local.get("b") is None and "a" in node.local.suspects


def test_a_replayed_number_doubts_only_the_key_its_first_message_named() -> None:
    node = core()
    node.handle(msg(11, key="named"))  # one of two messages numbered 11 is false
    node.handle(msg(12, key="floor"))
    fill(node, "named", "v", 11)
    fill(node, "newer", "v", 12)
    assert node.handle(msg(11, key="other")) is True  # 11 <= received (12): ask
    node.answer(msg(11, key="other"), Meta(INC, 12))
    assert list(node.local.suspects) == ["named"]  # one key to recheck, whatever the cache
    assert node.local.get("newer") == ("v", 12) and node.local.floor("floor") == 12
    assert node.counts["messages_forged"] == 1


def test_a_replayed_number_older_than_the_log_costs_one_question_and_nothing_more() -> None:
    node = core()
    for seq in range(11, 11 + 5000):  # past the log's 4096 numbers
        node.handle(msg(seq, key=f"k{seq % 50}"))
    for key in ("a", "b", "c"):
        fill(node, key, "v", 5010)
    assert node.handle(msg(20, key="a")) is True
    node.answer(msg(20, key="a"), Meta(INC, 5010))
    assert not node.local.suspects and node.local.get("b") == ("v", 5010)
    assert node.local.get("a") is None  # the doubtful message's own key: dropped, reloaded


def test_a_stale_marker_while_the_store_is_not_behind_changes_nothing() -> None:
    node = core()
    for seq in range(11, 31):
        node.handle(msg(seq))
    fill(node, "k2", "v", 30)
    beat = msg(20, op="beat")  # replayed: every number we handled, the store issued
    assert node.handle(beat) is True
    node.answer(beat, Meta(INC, 30))
    assert node.local.get("k2") == ("v", 30) and not node.local.suspects
    assert node.counts["messages_forged"] == 1 and node.handle(msg(31)) is False


def test_a_failed_write_drops_the_entry_and_taints_loads_in_flight() -> None:
    node = core()
    fill(node, "k", "old", 5)
    reader = node.open("k", True, owner=2)
    writer = node.open("k", False, owner=1)
    node.write_failed(writer, TimeoutError())
    assert node.local.get("k") is None
    node.loaded(reader, Reply(b"x", 5, INC, 5), "old", 0.0)
    node.guard_fill(reader)
    assert node.local.get("k") is None and node.counts["stale_fills_rejected"] == 1


def test_a_load_cannot_be_joined_by_the_thread_that_leads_it() -> None:
    node = core()
    node.open("k", True, owner=7)
    with pytest.raises(ReentrantLoad):
        node.joinable("k", 7)
    assert node.joinable("k", 8) is not None and node.joinable("k", None) is not None


def test_events_wait_for_the_shell_and_are_handed_over_once() -> None:
    node = core()
    fill(node, "k", "v", 5)
    assert list(node.take_events()) == [("fill", "k", 5)]
    assert list(node.take_events()) == []


# -- the stream transport: hold, replay, restore ------------------------------------------


def blip(node: NodeCore, meta: Meta) -> None:
    """The stream bus loses its reader, then reads the position ``meta`` again."""
    node.disconnected()
    node.subscribed(False, meta)


def test_a_clean_replay_restores_what_the_blip_held_with_no_round_trip() -> None:
    node = core("stream")
    for i, key in enumerate(["a", "b", "c"]):
        fill(node, key, i, 10)
    blip(node, Meta(INC, 12))
    assert (len(node.local), node.coherent) == (0, False)  # held: not served, not filled
    assert node.repair_batch(256) is None  # and no repair is asked for
    node.handle(msg(11, key="a"))
    node.handle(msg(12, key="x"))
    node.replayed()
    assert node.coherent and set(node.local.data) == {"b", "c"}
    assert (node.counts["replays"], node.counts["restored"], node.counts["gaps"]) == (1, 2, 0)
    assert ("restore", "", 12) in node.take_events()


def test_numbers_the_replay_never_showed_are_a_gap_and_repair() -> None:
    node = core("stream")
    fill(node, "a", 0, 10)
    blip(node, Meta(INC, 12))
    node.handle(msg(11, key="x"))  # 12 was issued, and no entry carried it
    node.replayed()
    assert node.counts["gaps"] == 1 and node.counts["restored"] == 0
    assert node.seq.last == 12 and list(node.local.suspects) == ["a"]
    assert node.repair_batch(256) is not None


def test_a_trimmed_stream_shows_as_a_gap_during_the_replay() -> None:
    node = core("stream")
    fill(node, "a", 0, 10)
    blip(node, Meta(INC, 15))
    assert node.handle(msg(14, key="x"))  # 11 to 13 were trimmed: the store is asked
    node.answer(msg(14, key="x"), Meta(INC, 15))
    node.handle(msg(15, key="y"))
    node.replayed()
    assert (node.counts["gaps"], node.counts["restored"]) == (1, 0)
    assert node.repair_batch(256) is not None


def test_a_question_lost_with_the_connection_leaves_repair_in_charge() -> None:
    node = core("stream")
    fill(node, "a", 0, 10)
    assert node.handle(msg(9, key="a"))  # a number received twice: forged, or a reset?
    blip(node, Meta(INC, 10))  # the answer never came; the numbers alone show nothing amiss
    node.replayed()
    assert node.counts["gaps"] == 0
    assert node.counts["restored"] == 0 and node.repair_batch(256) is not None


def test_a_reset_seen_at_the_reconnect_is_repaired_not_replayed() -> None:
    node = core("stream")
    fill(node, "a", 0, 10)
    blip(node, Meta("inc-2", 3))
    node.replayed()
    assert (node.counts["resets"], node.counts["restored"]) == (1, 0)
    assert node.seq.inc == "inc-2" and node.repair_batch(256) is not None


def test_pubsub_strategies_never_hold_or_restore() -> None:
    node = core("invalidate")
    fill(node, "a", 0, 10)
    blip(node, Meta(INC, 10))
    assert node.coherent and node.counts["repair_checks"] == 0
    assert node.repair_batch(256) is not None  # a reconnect on pub/sub means repair


@pytest.mark.parametrize("strategy", ["invalidate", "update"])
def test_a_write_whose_fill_is_overtaken_leaves_nothing_older_to_read(strategy: str) -> None:
    node = core(strategy)
    fill(node, "k", "v10", 10)
    first = node.open("k", False, owner=1)  # two threads of this node write k together
    second = node.open("k", False, owner=2)
    assert not node.handle(msg(11, op="set", src="me#1"))  # the first write's message
    assert not node.handle(msg(12, op="set", src="me#1"))  # the second's, before any reply
    node.wrote(first, "v11", Stamp(11, INC))  # tainted by 12: refused, yet it completed
    assert node.lookup("k") is None  # not v10: a read after our write never sees older
    node.wrote(second, "v12", Stamp(12, INC))
    assert node.lookup("k") == ("v12", 12)


def test_an_in_place_rollback_is_asked_once_then_the_writes_after_it_are_trusted() -> None:
    node = core()
    for seq in range(11, 301):  # the subscription delivered up to 300
        assert node.handle(msg(seq, key=f"w{seq}")) is False
    fill(node, "old", "v", 5)
    fill(node, "lost", "v", 250)  # a write the restored dump no longer has
    # An older dump is restored in place (same incarnation): the store is back at 100,
    # and the next genuine write takes 101.
    assert node.handle(msg(101)) is True
    node.answer(msg(101), Meta(INC, 101))
    questions = sum(node.handle(msg(seq)) for seq in range(102, 151))
    assert questions == 0  # re-based: not one question more, where each was one before
    assert (node.counts["gaps"], node.counts["messages_forged"]) == (1, 0)
    assert node.local.get("old") == ("v", 5)  # older than the rollback: still trusted
    assert "lost" in node.local.suspects  # its number was issued again: repair checks it


def test_a_replay_is_still_forged_when_the_store_has_not_gone_back() -> None:
    seq = Sequencer(inc=INC, last=300, received=300)
    assert seq.message_verdict(msg(101), Meta(INC, 300)) is Verdict.REPLAYED
    assert seq.message_verdict(msg(101), Meta(INC, 101)) is Verdict.ROLLED_BACK


def test_a_heartbeat_behind_the_node_re_bases_what_it_received() -> None:
    node = core()
    for seq in range(11, 31):
        node.handle(msg(seq))
    beat = msg(20, op="beat")
    assert node.handle(beat) is True
    node.answer(beat, Meta(INC, 20))  # the store went back to 20
    assert [node.handle(msg(seq)) for seq in (21, 22, 23)] == [False, False, False]


# -- the link's state: one enum, and steps out of order refused ----------------------------


def state(node: NodeCore) -> tuple[Link, bool]:
    """The link's state and whether the node trusts its cache, read afresh."""
    return node.link, node.coherent


def test_the_link_moves_through_its_states_and_coherence_follows_it() -> None:
    node = core()
    assert state(node) == (Link.LIVE, True)
    node.disconnected()
    assert state(node) == (Link.DOWN, False)
    node.subscribed(False, Meta(INC, 10))
    assert state(node) == (Link.LIVE, True)
    stream = core("stream")
    stream.disconnected()
    stream.subscribed(False, Meta(INC, 10))
    assert state(stream) == (Link.REPLAYING, False)
    stream.replayed()
    assert state(stream) == (Link.LIVE, True)


def test_a_naive_node_keeps_trusting_while_its_link_is_down() -> None:
    node = core(reconnect_flush=False)
    node.disconnected()
    assert state(node) == (Link.DOWN, True)


@pytest.mark.parametrize(
    "step",
    [
        lambda n: n.subscribed(True, Meta(INC, 10)),  # a second first subscription
        lambda n: n.subscribed(False, Meta(INC, 10)),  # a stream reader back, never lost
        lambda n: n.replayed(),  # a replay with no reconnect before
    ],
    ids=["first-twice", "resumed-while-live", "replayed-while-live"],
)
def test_a_step_out_of_order_raises_instead_of_being_ignored(step: Any) -> None:
    node = core("stream")
    with pytest.raises(CoreMisuse, match="while live"):
        step(node)
    assert isinstance(CoreMisuse("x"), CachelabError)


def test_a_silent_resubscription_while_live_is_a_reconnect_not_a_misuse() -> None:
    """redis-py can reconnect a PubSub and resubscribe by itself: the bus then sees its
    channels confirmed again with no loss reported first, and messages may have been lost."""
    node = core()
    fill(node, "k", "v", 10)
    node.subscribed(False, Meta(INC, 12))  # two writes were published meanwhile
    assert state(node) == (Link.LIVE, True)
    assert node.counts["reconnects"] == 1 and node.local.get("k") is None  # suspect now


def test_a_closed_link_stays_closed_whatever_a_stopping_bus_reports() -> None:
    node = core()
    node.close()
    node.disconnected()
    node.subscribed(False, Meta(INC, 10))
    assert state(node) == (Link.CLOSED, False) and node.counts["disconnects"] == 0


def test_a_node_that_never_subscribes_is_live_from_the_start() -> None:
    node = NodeCore("me#1", strategy_for("none"), LocalStore(100), Switches(), True)
    assert state(node) == (Link.LIVE, True)


def test_a_late_reply_of_an_incarnation_the_node_left_does_not_take_the_node_back() -> None:
    """A read sent before a restart, answered after the node re-based on the new incarnation:
    the reply names the old one. Taking it as "another incarnation" would re-base the node on
    the old one, and a late message of the old incarnation would then be trusted and applied:
    an old value, served as the newest (strategy update)."""
    node = core("update")
    reader = node.open("k", True, owner=1)
    restarted = Message("ns", "set", "k", "peer#1", 1, value="new", inc="inc-2")
    assert node.handle(restarted)  # another incarnation: questioned
    node.answer(restarted, Meta("inc-2", 1))
    assert node.seq.inc == "inc-2" and node.counts["resets"] == 1
    node.loaded(reader, Reply(b'[0,"old"]', 9, INC, 10), "old", 0.0)  # sent before the restart
    assert not node.guard_fill(reader)
    assert node.seq.inc == "inc-2" and node.counts["resets"] == 1
    node.local.fill("k", "new", 1)
    late = Message("ns", "set", "k", "peer#1", 11, value="old", inc=INC)
    if node.handle(late):
        node.answer(late, Meta("inc-2", 1))
    assert node.local.get("k") == ("new", 1)
    assert node.counts["messages_outdated"] == 1


@pytest.mark.parametrize("how", ["message", "marker"])
def test_a_load_in_flight_across_a_rollback_cannot_fill_a_lost_version(how: str) -> None:
    """An older dump restored in place (same incarnation, a lower counter): a load that read
    the store before it, answered after the node noticed, carries a version the store has
    lost. Filled, it would outrank every later write of the key, whose numbers are issued
    again lower: its messages would be outdated, and the lost value served for good."""
    node = core("update")
    for seq in range(11, 21):
        node.handle(msg(seq, key=f"x{seq}"))  # the node has handled up to 20
    reader = node.open("k", True, owner=1)  # reads the store at 18, before the reload
    if how == "message":  # the first write after the reload is numbered 13
        noticed = msg(13, key="y")
        assert node.handle(noticed)
        node.answer(noticed, Meta(INC, 13))
    else:  # a heartbeat after the reload carries the store's 12
        beat = Message("ns", "beat", "token", "me#1", 12, inc=INC)
        assert node.handle(beat)
        node.answer(beat, Meta(INC, 12))
    node.loaded(reader, Reply(b'[0,"lost"]', 18, INC, 20), "lost", 0.0)
    assert not node.guard_fill(reader)
    assert node.local.get("k") is None


def test_a_claimed_gap_no_marker_settles_is_repaired_as_true_after_a_second() -> None:
    now = [0.0]
    node = NodeCore(
        "me#1", strategy_for("invalidate"), LocalStore(100, timer=lambda: now[0]), Switches(), True
    )
    node.subscribed(True, Meta(INC, 10))
    node.defer_gaps = True
    fill(node, "a", "x", 10)
    assert node.handle(msg(13))  # a jump: the store is asked
    node.answer(msg(13), Meta(INC, 13))
    assert (node.counts["gaps_deferred"], node.counts["gaps"], node.seq.doubted) == (1, 0, 13)
    now[0] = 0.9
    node.expire_doubt()
    assert node.seq.doubted == 13 and node.counts["gaps"] == 0  # still waiting for its marker
    now[0] = 1.1
    node.expire_doubt()
    assert (node.counts["gaps"], node.seq.doubted, node.counts["suspected"]) == (1, 0, 1)
