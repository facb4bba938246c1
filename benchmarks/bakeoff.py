"""Stale reads side by side (issue #17): cachelab's strategies against redis-py's own
client-side cache, on one workload with faults; writes docs/bakeoff.md.

Each row is a separate run of the same workload on a private server: ``readers`` reader
processes read keys ``k0 .. k{keys-1}`` (uniform, or Zipf with ``--skew``) back to back
for ``seconds``, as fast as they can, while one writer process writes ``rate`` times a
second, each write a strictly increasing version number (its value). A fault comes every
``fault_every`` seconds, none in the last ``quiet`` seconds, in turn:

- **kill**: ``CLIENT KILL ID`` of every reader connection that receives invalidations:
  the pub/sub ones (cachelab's subscriptions, a TrackingNode's redirect target) and the
  ones tracking keys for themselves (redis-py's cache, whose RESP3 connection carries
  both its reads and the server's invalidations: that one connection is killed);
- **pause**: ``CLIENT PAUSE 200 ALL``.

The checker is cachelab's (``cachelab.check.stale_reads``): every process records its ops
with ``time.monotonic()``, CLOCK_MONOTONIC on Linux, one clock for every process of the
machine, and the histories are merged as ``cachelab run`` merges them. A read is stale
when a write of its key that ended before the read started has a newer version than the
value it returned. A reader records in full only the reads that returned a version older
than the newest its key's writer had *started* by the read's end (the writer posts it in
shared memory before each write): every other read is fresh by construction, since a
write that ended before the read started had started before it ended, so these are only
counted. That keeps tens of millions of hits out of the checker and changes no verdict.

``make bakeoff`` runs the defaults (minutes); ``python -m benchmarks.bakeoff --help``.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import secrets
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack, suppress
from dataclasses import dataclass
from multiprocessing import get_context
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import redis

from benchmarks.bakeoff_report import Made, Row, fraction, markdown, table
from benchmarks.bakeoff_sides import (
    CONTENDERS,
    DEFAULT_CONTENDERS,
    PAUSE_MS,
    READY_TIMEOUT,
    Contender,
    Recorded,
    Spec,
    Workload,
    child_main,
    choose,
    hear,
    say,
    sleep_until,
)
from cachelab.check import percentile, stale_reads
from cachelab.harness.servers import KINDS, Kind, ServerProcess, binary, version
from cachelab.history import READ, WRITE, Op, merge

SPAWN = get_context("spawn")  # a fresh interpreter: no forked locks or threads of the parent


# -- the parent ----------------------------------------------------------------------------


class Child:
    """The parent's handle on one child process and its end of the pipe."""

    def __init__(self, spec: Spec, latest: Any) -> None:
        self.spec = spec
        self.conn, theirs = SPAWN.Pipe()
        self.proc: BaseProcess = SPAWN.Process(
            target=child_main, args=(spec.to_json(), theirs, latest), name=spec.name
        )
        self.proc.start()
        theirs.close()  # the child holds its end: EOF here once it is gone

    def ask(self, message: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Send one request and wait for its answer."""
        say(self.conn, message)
        return self.hear(timeout)

    def hear(self, timeout: float) -> dict[str, Any]:
        """The child's next message, or an error that names it."""
        try:
            return hear(self.conn, timeout)
        except (EOFError, TimeoutError) as exc:
            code = self.proc.exitcode
            raise RuntimeError(f"{self.spec.name} (exit code {code}): {exc}") from None

    def result(self, timeout: float) -> tuple[Recorded, int | None]:
        """What the child counted and recorded over the run, and its hits if counted."""
        head = self.hear(timeout)
        out = Recorded(count=head["count"], errors=head["errors"], last_error=head["last"])
        for column in out.columns():
            column.frombytes(self.conn.recv_bytes())
        return out, head["hits"]

    def stop(self) -> None:
        """Ask it to stop: it closes its node and exits (``end`` waits for that)."""
        with suppress(OSError, ValueError):  # gone already
            say(self.conn, {"cmd": "stop"})

    def end(self) -> None:
        """Make sure it is gone: wait for it to exit, else kill it."""
        self.proc.join(15.0)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()
        self.conn.close()


def end_all(children: Sequence[Child]) -> None:
    """Stop every child at once (they close their nodes in parallel), then wait for each."""
    for child in children:
        child.stop()
    with ExitStack() as stack:  # every one ended even if another raised
        for child in children:
            stack.callback(child.end)


@dataclass
class Faults:
    """The faults a run injected: how many, the connections killed, when the last healed."""

    injected: int = 0
    killed: int = 0
    healed: float | None = None


def inject(admin: redis.Redis, tag: str, start: float, workload: Workload) -> Faults:
    """Each fault at its time, kill and pause in turn; then wait out the run."""
    faults = Faults()
    for i, offset in enumerate(workload.fault_times()):
        sleep_until(start + offset)
        if i % 2 == 0:
            faults.killed += kill_readers(admin, tag)
            faults.healed = time.monotonic()
        else:
            admin.client_pause(PAUSE_MS, all=True)
            faults.healed = time.monotonic() + PAUSE_MS / 1000  # it resumes by itself
        faults.injected += 1
    sleep_until(start + workload.seconds)
    return faults


def kill_readers(admin: redis.Redis, tag: str) -> int:
    """``CLIENT KILL ID`` of every reader connection that hears invalidations; how many."""
    killed = 0
    for client in admin.client_list():
        if f"{tag}-r" in client.get("name", "") and hears_invalidations(client):
            with suppress(redis.ResponseError):  # gone already
                killed += int(admin.client_kill_filter(_id=client["id"]))
    return killed


def hears_invalidations(client: dict[str, str]) -> bool:
    """A pub/sub connection, or one tracking keys for itself (no redirect: RESP3's push)."""
    flags = client.get("flags", "")
    return "P" in flags or ("t" in flags and int(client.get("redir", "-1")) <= 0)




def run_row(url: str, server: str, contender: Contender, workload: Workload) -> Row:
    """One contender's run on the server at ``url``; every child ended on the way out."""
    tag = f"bakeoff-{secrets.token_hex(3)}"
    with ExitStack() as stack:
        admin = stack.enter_context(redis.Redis.from_url(url, client_name=f"{tag}-admin"))
        latest = SPAWN.RawArray(ctypes.c_longlong, workload.keys)
        children = _start(stack, url, tag, contender, workload, latest)
        answer = children[1].ask({"cmd": "hitcost"}, READY_TIMEOUT)
        cost = (answer["seconds"], answer["baseline"])
        gets = _gets(admin)
        start = time.monotonic() + 0.2
        for child in children:
            say(child.conn, {"cmd": "go", "start": start, "until": start + workload.seconds})
        faults = inject(admin, tag, start, workload)
        results = [child.result(READY_TIMEOUT) for child in children]
        misses = _gets(admin) - gets  # redis-py's misses: the readers' GETs (the writer SETs)
    return judge(server, contender, workload, results, faults, cost, misses)


def _start(stack: ExitStack, url: str, tag: str, contender: Contender, workload: Workload,
           latest: Any) -> list[Child]:  # fmt: skip
    """The writer, then the readers, all ready (the writer has seeded every key)."""
    roles = [("writer", 0)] + [("reader", i) for i in range(workload.readers)]
    children: list[Child] = []
    stack.callback(end_all, children)  # those started so far, if one fails to start
    for role, index in roles:
        children.append(Child(Spec(role, index, url, tag, contender.name, workload), latest))
    for child in children:
        child.hear(READY_TIMEOUT)
    return children


def _gets(admin: redis.Redis) -> int:
    """GET calls the server has served so far."""
    stats = admin.info("commandstats").get("cmdstat_get", {})
    return int(stats.get("calls", 0))


def judge(server: str, contender: Contender, workload: Workload,
          results: list[tuple[Recorded, int | None]], faults: Faults, cost: tuple[float, float],
          misses: int) -> Row:  # fmt: skip
    """The checker's verdict on the merged histories, and the row's figures."""
    names = workload.names
    (writer, _), readers = results[0], results[1:]
    histories = [writer.ops("w", WRITE, names)]
    histories += [out.ops(f"r{i}", READ, names) for i, (out, _) in enumerate(readers)]
    found = stale_reads(merge(histories))
    reads = sum(out.count for out, _ in readers)
    counted = [hits for _, hits in readers]
    hits = sum(h for h in counted if h is not None) if None not in counted else reads - misses
    return Row(
        server, contender.label, reads, writer.count, len(found),
        percentile(sorted(s for _, s in found), 0.99), _after(found, faults, workload), hits,
        *cost, writer.errors + sum(out.errors for out, _ in readers), faults.injected,
        faults.killed, sum(len(out.keys) for out, _ in readers),
        next((out.last_error for out, _ in results if out.last_error), ""),
    )  # fmt: skip


def _after(found: list[tuple[Op, float]], faults: Faults, workload: Workload) -> int | None:
    """Stale reads that started ``workload.after`` seconds or more after the last fault healed."""
    if faults.healed is None:
        return None
    since = faults.healed + workload.after
    return sum(op.start >= since for op, _ in found)


# -- the servers, the table, the document ---------------------------------------------------


def run_all(kinds: Sequence[Kind], contenders: Sequence[Contender], workload: Workload,
            say: Callable[[str], None] = print) -> tuple[list[Row], dict[str, str]]:  # fmt: skip
    """Every contender on every server it runs on; the rows, and each server's version."""
    rows: list[Row] = []
    versions: dict[str, str] = {}
    for kind in kinds:
        versions[kind] = version(kind) or "?"
        with ServerProcess(kind) as server:
            for contender in contenders:
                rows += _row_or_skip(server, contender, versions[kind], workload, say)
    return rows, versions


def _row_or_skip(server: ServerProcess, contender: Contender, server_version: str,
                 workload: Workload, say: Callable[[str], None]) -> list[Row]:  # fmt: skip
    """The contender's row on ``server``, or none (said why)."""
    why = contender.runs_on(server.kind, server_version)
    if why is not None:
        say(f"skipped {contender.name} on {server.kind}: {why}")
        return []
    began = time.monotonic()
    row = run_row(server.url, server.kind, contender, workload)
    error = f"; {row.errors} errors, e.g. {row.last_error}" if row.errors else ""
    say(f"{server.kind:6} {contender.label:28} {fraction(row)} stale, "
        f"{time.monotonic() - began:.0f} s{error}")  # fmt: skip
    return [row]



# -- the command line ------------------------------------------------------------------------


def _names(choices: Sequence[str]) -> Callable[[str], tuple[str, ...]]:
    """A parser of ``a,b,c`` that refuses a name not in ``choices``."""

    def parse(text: str) -> tuple[str, ...]:
        names = tuple(name.strip() for name in text.split(",") if name.strip())
        unknown = [name for name in names if name not in choices]
        if unknown or not names:
            raise argparse.ArgumentTypeError(f"choose from {', '.join(choices)}")
        return names

    return parse


def parser() -> argparse.ArgumentParser:
    """The options, with issue #17's workload as the defaults."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    d = Workload()
    p.add_argument("--seconds", type=float, default=d.seconds, help="each row's run")
    p.add_argument("--fault-every", type=float, default=d.fault_every)
    p.add_argument("--quiet", type=float, default=d.quiet, help="no fault in the last seconds")
    p.add_argument("--after", type=float, default=d.after, help="'stale after' starts here")
    p.add_argument("--readers", type=int, default=d.readers)
    p.add_argument("--keys", type=int, default=d.keys)
    p.add_argument("--rate", type=float, default=d.rate, help="writes per second")
    p.add_argument("--skew", type=float, default=d.skew, help="Zipf skew of reads (0: uniform)")
    p.add_argument("--servers", type=_names(KINDS), default=("redis8", "redis", "valkey"))
    p.add_argument("--contenders", type=_names(tuple(CONTENDERS)), default=DEFAULT_CONTENDERS)
    p.add_argument("--out", type=Path, default=Path("docs/bakeoff.md"))
    return p


def workload_of(args: argparse.Namespace) -> Workload:
    """The workload the options ask for."""
    fields = ("seconds", "fault_every", "quiet", "after", "readers", "keys", "rate", "skew")
    return Workload(**{name: getattr(args, name) for name in fields})


def main(argv: Sequence[str] | None = None) -> None:
    """Run every row, print the table, write the document."""
    args = parser().parse_args(argv)
    workload = workload_of(args)
    missing = [kind for kind in args.servers if binary(kind) is None]
    if missing:
        raise SystemExit(f"no server binary for {', '.join(missing)}: see cachelab.harness.servers")
    began, load = time.monotonic(), os.getloadavg()[0]
    rows, versions = run_all(args.servers, choose(args.contenders), workload)
    command = " ".join(["python -m benchmarks.bakeoff", *(sys.argv[1:] if argv is None else argv)])
    made = Made(command, time.monotonic() - began, (load, os.getloadavg()[0]))
    args.out.write_text(markdown(rows, versions, workload, made))
    print(table(rows, workload))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

