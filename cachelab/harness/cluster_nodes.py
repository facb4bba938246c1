"""What ``CLUSTER NODES`` says: each node as one member of a Redis Cluster sees it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class NodeView:
    """One line of ``CLUSTER NODES``: a node as one member of the cluster sees it."""

    node_id: str
    port: int
    flags: frozenset[str]
    master_id: str | None
    slots: tuple[tuple[int, int], ...]

    @property
    def is_master(self) -> bool:
        """True for a master (failed or not)."""
        return "master" in self.flags

    @property
    def failing(self) -> bool:
        """True when the observer suspects (pfail) or agreed (fail) that this node is down."""
        return bool(self.flags & {"fail", "fail?"})

    def shape(self) -> tuple[str, bool, str | None, tuple[tuple[int, int], ...]]:
        """What every node must agree on: role, master and slots (not pings or 'myself')."""
        return (self.node_id, self.is_master, self.master_id, self.slots)


def parse_nodes(text: str) -> dict[str, NodeView]:
    """``CLUSTER NODES`` output as node id -> NodeView (slots being moved are left out)."""
    views = {}
    for line in text.splitlines():
        if line.strip():
            view = _parse_line(line.split())
            views[view.node_id] = view
    return views


def _parse_line(fields: list[str]) -> NodeView:
    """``<id> <ip:port@cport[,host]> <flags> <master> <ping> <pong> <epoch> <link> <slot>...``."""
    address = fields[1].split("@")[0]
    ranges = []
    for token in fields[8:]:
        if token.startswith("["):  # "[slot->-id]" / "[slot-<-id]": a migration in progress
            continue
        low, _, high = token.partition("-")
        ranges.append((int(low), int(high or low)))
    return NodeView(
        node_id=fields[0],
        port=int(address.rsplit(":", 1)[1]),
        flags=frozenset(fields[2].split(",")),
        master_id=None if fields[3] == "-" else fields[3],
        slots=tuple(sorted(ranges)),
    )


def owns_slots(view: NodeView | None) -> bool:
    """True for a live-looking master with at least one slot."""
    return view is not None and view.is_master and bool(view.slots)


def is_replica(view: NodeView | None) -> bool:
    """True for a replica that knows its master."""
    return view is not None and not view.is_master and view.master_id is not None
