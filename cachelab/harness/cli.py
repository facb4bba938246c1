"""The ``cachelab`` command.

``cachelab lab`` copies the notebooks into a folder of yours and opens it in JupyterLab;
``cachelab site`` executes them into a static HTML site that works offline (both in
``cachelab.lab.workcopy``, imported only when asked for, so the other commands never load
Jupyter). ``cachelab node`` serves one node over a line protocol
(``cachelab.harness.nodeproc``), ``cachelab run`` runs many node processes under faults and
checks their merged history (``cachelab.harness.runner``), and ``cachelab demo`` shows nodes
repairing live (``cachelab.harness.demo``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cachelab import __version__
from cachelab.backends import BackendUnavailable
from cachelab.harness.livefaults import FAULTS, parse_faults
from cachelab.harness.loadgen import MAX_VALUE_SIZE
from cachelab.harness.runner import RUN_STRATEGIES
from cachelab.stripes import CLUSTER_STRIPES

# -- cachelab node / run / demo ------------------------------------------------------

RUN_EPILOG = """\
clocks: every node records time.monotonic(). On one Linux machine all processes read the
same CLOCK_MONOTONIC, so their histories merge on one clock; this command starts every
node on this machine. Nodes on several machines would each have their own clock: with the
offset between them bounded by E seconds, --clock-offset E makes the checker count a
write as completed before a read only when write.end + E < read.start.

faults: kill-pubsub (CLIENT KILL TYPE pubsub, and stream readers), pause (CLIENT PAUSE
200 ms ALL: works through any URL and ends by itself), sigstop (SIGSTOP 200 ms of a
private server; not with --url). Each is injected as the workload starts, then every
--fault-every seconds.

example: cachelab run --procs 4 --threads 2 --ops 100000 --faults kill-pubsub,pause
"""


_STRICT_HELP = (
    "strict=True: no hit while a message the node was sent waits unread (docs/protocol.md)"
)

def _number(
    kind: Callable[[str], float], low: float, what: str, high: float = math.inf
) -> Callable[[str], Any]:
    """An argparse type: ``kind(text)`` from ``low`` to ``high`` (finite), else a clear error."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {what}, not {text!r}") from None
        if not (math.isfinite(value) and low <= value <= high):
            raise argparse.ArgumentTypeError(f"must be {what}, not {text!r}")
        return value

    return parse


positive = _number(int, 1, "a positive integer")
count = _number(int, 0, "an integer >= 0")
seconds = _number(float, 0.0, "a number of seconds >= 0")
positive_seconds = _number(float, 1e-3, "a number of seconds >= 0.001")


def share(text: str) -> float:
    """An argparse type: a fraction in [0, 1]."""
    value = _number(float, 0.0, "a fraction between 0 and 1")(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"must be a fraction between 0 and 1, not {text!r}")
    return float(value)


def redis_url(text: str) -> str:
    """An argparse type: a redis://, rediss:// or unix:// URL."""
    if urlsplit(text).scheme not in ("redis", "rediss", "unix"):
        raise argparse.ArgumentTypeError(
            f"not a Redis URL: {text!r} (expected redis://HOST:PORT/DB)"
        )
    return text


def faults(text: str) -> tuple[str, ...]:
    """An argparse type: comma-separated fault names."""
    try:
        return parse_faults(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_process_commands(commands: Any) -> None:
    """The ``node``, ``run`` and ``demo`` subcommands."""
    _node_parser(commands).set_defaults(run=_node)
    _run_parser(commands).set_defaults(run=_run)
    _demo_parser(commands).set_defaults(run=_demo)


def _node_parser(commands: Any) -> argparse.ArgumentParser:
    node = commands.add_parser(
        "node",
        help="serve one CacheNode over a JSON line protocol on a private Unix socket",
        description="Run one CacheNode in this process and serve the JSON line protocol of "
        "cachelab.harness.nodeproc on a Unix socket in a new directory only this user may "
        "enter. The first line printed is 'cachelab-node listening on PATH'. 'quit' or "
        "SIGTERM ends it.",
    )
    node.add_argument(
        "--url",
        type=redis_url,
        default=None,
        help="Redis URL (default: the embedded fakeredis, which no other process can reach)",
    )
    node.add_argument("--name", default="node", help="the node's name (default: node)")
    node.add_argument("--namespace", default="cachelab", help="default: cachelab")
    node.add_argument(
        "--strategy",
        choices=RUN_STRATEGIES,
        default="invalidate",
        help="default: invalidate (tracking records no versions)",
    )
    node.add_argument(
        "--stripes",
        type=positive,
        default=None,
        help="stripes of the namespace (default: 1, or 16 on a Redis Cluster)",
    )
    node.add_argument("--cluster", action="store_true", help="--url is a node of a Redis Cluster")
    node.add_argument(
        "--heartbeat",
        type=positive_seconds,
        default=None,
        help="seconds between heartbeats (default: CacheNode's)",
    )
    node.add_argument("--strict", action="store_true", help=_STRICT_HELP)
    node.add_argument(
        "--watch-stdin",
        action="store_true",
        help="quit when stdin closes (how a runner keeps no node behind)",
    )
    return node  # type: ignore[no-any-return]


def _run_parser(commands: Any) -> argparse.ArgumentParser:
    run = commands.add_parser(
        "run",
        help="run node processes under a workload and faults; check the history",
        description="Start --procs node processes on one server, run --ops operations "
        "among them, inject --faults, settle every node, merge their histories on one clock "
        "and print the consistency checker's report.",
        epilog=RUN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("--procs", type=positive, default=2, help="node processes (default: 2)")
    run.add_argument("--threads", type=positive, default=2, help="threads per node (default: 2)")
    run.add_argument("--ops", type=positive, default=10_000, help="operations in all")
    run.add_argument(
        "--url",
        type=redis_url,
        default=None,
        help="Redis URL (default: a private redis-server on a free port, or "
        "the embedded fakeredis for one process without faults)",
    )
    run.add_argument("--strategy", choices=RUN_STRATEGIES, default="invalidate")
    run.add_argument("--keys", type=positive, default=100, help="distinct keys (default: 100)")
    run.add_argument("--read-share", type=share, default=0.9, help="default: 0.9")
    run.add_argument(
        "--value-size",
        type=_number(int, 0, f"an integer from 0 to {MAX_VALUE_SIZE}", MAX_VALUE_SIZE),
        default=16,
        help=f"characters, at most {MAX_VALUE_SIZE} (default: 16)",
    )
    run.add_argument(
        "--faults", type=faults, default=(), help=f"comma-separated, from: {', '.join(FAULTS)}"
    )
    run.add_argument(
        "--fault-every",
        type=positive_seconds,
        default=1.0,
        help="seconds between rounds of faults (default: 1)",
    )
    run.add_argument("--seed", type=int, default=1, help="workload seed (default: 1)")
    run.add_argument(
        "--clock-offset",
        type=seconds,
        default=0.0,
        metavar="SECONDS",
        help="clock uncertainty between nodes (see clocks below; default 0)",
    )
    run.add_argument(
        "--stripes",
        type=positive,
        default=None,
        help="stripes of the namespace (default: 1, or 16 on a Redis Cluster)",
    )
    run.add_argument(
        "--cluster",
        action="store_true",
        help="on a Redis Cluster: --url names one of its nodes; without --url, a private "
        "one (3 masters, 3 replicas) is started and stopped",
    )
    run.add_argument("--strict", action="store_true", help=_STRICT_HELP)
    run.add_argument("--settle-timeout", type=positive_seconds, default=20.0)
    run.add_argument("--json", action="store_true", help="print the report and stats as JSON")
    run.add_argument(
        "--history",
        type=Path,
        default=None,
        metavar="PATH",
        help="write the merged history, one JSON list per line",
    )
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    return run  # type: ignore[no-any-return]


def _demo_parser(commands: Any) -> argparse.ArgumentParser:
    demo = commands.add_parser(
        "demo",
        help="watch nodes lose their subscriptions and repair, live",
        description="A few nodes, writes going on, every pub/sub connection killed halfway, "
        "and a table of what each node does about it.",
    )
    demo.add_argument(
        "--url",
        type=redis_url,
        default=None,
        help="Redis URL: node processes on it (default: nodes in this process "
        "on the embedded fakeredis)",
    )
    demo.add_argument("--nodes", type=positive, default=3, help="default: 3")
    demo.add_argument("--seconds", type=positive_seconds, default=10.0, help="default: 10")
    demo.add_argument("--steps", type=positive, default=None, help="default: four a second")
    demo.add_argument("--strategy", choices=RUN_STRATEGIES, default="invalidate")
    demo.add_argument("--plain", action="store_true", help="a table per step, no escape codes")
    return demo  # type: ignore[no-any-return]


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM as Ctrl-C while the command runs: it unwinds and ends every process it
    started. The previous handler comes back afterwards."""

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _fail(command: str, message: object, code: int = 2) -> int:
    """A one-line error on stderr, and the exit code."""
    print(f"cachelab {command}: error: {message}", file=sys.stderr)
    return code


def _node(args: argparse.Namespace) -> int:
    """``cachelab node``."""
    from cachelab.backends import connect
    from cachelab.harness.nodeclient import NodeError, build_node, node_options
    from cachelab.harness.nodeproc import serve_node

    try:
        client = connect(args.url, cluster=True) if args.cluster else connect(args.url)
    except (BackendUnavailable, ValueError) as exc:
        return _fail("node", exc)
    try:
        stripes = args.stripes or (CLUSTER_STRIPES if args.cluster else 1)
        options = node_options(
            args.name, args.namespace, args.strategy, stripes, args.heartbeat, args.cluster,
            args.strict,
        )  # fmt: skip
        node, recorder = build_node(client, options)
    except (NodeError, ValueError, TypeError) as exc:
        client.close()
        return _fail("node", exc)
    try:
        return serve_node(node, recorder, args.watch_stdin)
    except KeyboardInterrupt:
        return 130
    finally:
        client.close()


def _run(args: argparse.Namespace) -> int:
    """``cachelab run``."""
    from cachelab.harness.nodeclient import NodeError
    from cachelab.harness.runner import RunConfig, RunError, run

    config = RunConfig(
        procs=args.procs,
        threads=args.threads,
        ops=args.ops,
        url=args.url,
        strategy=args.strategy,
        keys=args.keys,
        read_share=args.read_share,
        value_size=args.value_size,
        faults=args.faults,
        fault_every=args.fault_every,
        seed=args.seed,
        clock_offset=args.clock_offset,
        stripes=args.stripes or (CLUSTER_STRIPES if args.cluster else 1),
        cluster=args.cluster,
        strict=args.strict,
        settle_timeout=args.settle_timeout,
        progress=not args.quiet,
    )
    try:
        with _sigterm_interrupts():
            result = run(config)
    except (RunError, BackendUnavailable) as exc:
        return _fail("run", exc)
    except NodeError as exc:
        return _fail("run", exc, 1)
    except KeyboardInterrupt:
        return _fail("run", "interrupted; every node process was ended", 130)
    if args.history is not None:
        _write_history(args.history, result.history)
    print(json.dumps(result.to_dict(), indent=1, allow_nan=False) if args.json else result.text())
    if not result.settled:
        return _fail("run", f"the nodes did not settle within {args.settle_timeout:g}s", 1)
    return 0


def _write_history(path: Path, history: Sequence[Any]) -> None:
    """The merged history, one JSON list per line: node, op, key, start, end, version, hit, inc."""
    with path.open("w") as out:
        for op in history:
            out.write(json.dumps(list(op)) + "\n")


def _demo(args: argparse.Namespace) -> int:
    """``cachelab demo``."""
    from cachelab.harness.demo import DemoConfig, run_demo
    from cachelab.harness.nodeclient import NodeError

    config = DemoConfig(
        url=args.url,
        nodes=args.nodes,
        seconds=args.seconds,
        steps=args.steps,
        plain=args.plain,
        strategy=args.strategy,
    )
    try:
        with _sigterm_interrupts():
            return run_demo(config, sys.stdout)
    except BackendUnavailable as exc:
        return _fail("demo", exc)
    except NodeError as exc:
        return _fail("demo", exc, 1)
    except KeyboardInterrupt:
        return _fail("demo", "interrupted", 130)


def add_lab_commands(commands: Any) -> None:
    """The ``lab`` and ``site`` subcommands."""
    lab = commands.add_parser(
        "lab",
        help="copy the notebooks into a folder of yours and open it in JupyterLab",
        description="Copy the notebooks into --dir (refreshing copies you have not edited, "
        "never overwriting your edits) and start JupyterLab there. Options it does not "
        "know go on to jupyter lab, e.g. --IdentityProvider.token=T.",
    )
    lab.add_argument(
        "--dir", type=Path, default=Path("cachelab-lab"), help="default: ./cachelab-lab"
    )
    lab.add_argument("--port", type=positive, default=None, help="default: JupyterLab's")
    lab.add_argument("--no-browser", action="store_true", help="print the URL, open nothing")
    lab.add_argument(
        "--reset",
        metavar="NAME",
        default=None,
        help="restore one notebook from the package (a file name, or a prefix such as 04) "
        "and exit",
    )
    lab.set_defaults(run=_lab)
    site = commands.add_parser("site", help="execute every notebook into a static HTML site")
    site.add_argument(
        "--out", type=Path, default=Path("cachelab-site"), help="default: ./cachelab-site"
    )
    site.add_argument(
        "--only", nargs="*", default=[], metavar="PREFIX", help="notebook name prefixes, e.g. 02"
    )
    site.add_argument("--timeout", type=positive, default=300, help="seconds per cell")
    site.add_argument(
        "--notebooks", type=Path, default=None, help="default: the notebooks cachelab ships"
    )
    site.set_defaults(run=_site)


def _lab(args: argparse.Namespace, extra: Sequence[str] = ()) -> int:
    """``cachelab lab``: serve a working copy (replacing this process), or reset a notebook."""
    from cachelab.lab import workcopy

    try:
        if args.reset is not None:
            print("cachelab lab:", workcopy.reset(args.dir, args.reset))
            return 0
        workcopy.serve(args.dir, args.port, not args.no_browser, extra)
    except workcopy.LabError as exc:
        return _fail("lab", exc)


def _site(args: argparse.Namespace) -> int:
    """``cachelab site``."""
    from cachelab.lab import workcopy

    try:
        index = workcopy.run_site(args.out, args.only, args.timeout, args.notebooks)
    except workcopy.LabError as exc:
        return _fail("site", exc)
    print(f"cachelab site: open {index}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run it."""
    parser = argparse.ArgumentParser(prog="cachelab", description=__doc__)
    parser.add_argument("--version", action="version", version=f"cachelab {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    add_lab_commands(commands)
    add_process_commands(commands)
    args, extra = parser.parse_known_args(argv)
    if extra and (args.command != "lab" or args.reset is not None):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command == "lab":
        return _lab(args, extra)
    return int(args.run(args))


if __name__ == "__main__":
    raise SystemExit(main())
