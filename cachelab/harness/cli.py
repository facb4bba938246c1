"""The ``cachelab`` command: ``cachelab lab`` opens a working copy of the notebooks in JupyterLab.

JupyterLab saves outputs into the notebooks it serves, so it never serves the
tracked ones: ``lab`` copies them into ``.lab/notebooks`` (gitignored) and serves
that folder, with JupyterLab's news prompt and update check switched off.
``cachelab site`` executes every notebook into a static HTML site that works offline.
``cachelab node`` serves one node over a line protocol (``cachelab.harness.nodeproc``), ``cachelab
run`` runs many node processes under faults and checks their merged history
(``cachelab.harness.runner``), and ``cachelab demo`` shows nodes repairing live
(``cachelab.harness.demo``).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import shutil
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cachelab.backends import BackendUnavailable
from cachelab.harness.livefaults import FAULTS, parse_faults
from cachelab.harness.runner import RUN_STRATEGIES
from cachelab.lab import NOTEBOOKS
from cachelab.lab.jupyter_config import PATH as JUPYTER_CONFIG
from cachelab.stripes import CLUSTER_STRIPES

QUIET_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
}
"""User settings the lab starts with: no "Jupyter news?" prompt over the notebook."""


def workdir(notebooks: Path) -> Path:
    """Where the lab keeps its working copy and settings: ``.lab`` beside ``notebooks``."""
    return notebooks.resolve().parent / ".lab"


def _digest(path: Path) -> str:
    """A file's content hash."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def sync_copies(notebooks: Path, target: Path) -> list[str]:
    """Copy new or updated notebooks into ``target``, never over a student's edits.

    Returns a note for each copy that was kept although its source changed.
    """
    target.mkdir(parents=True, exist_ok=True)
    ledger_path = target / ".sources.json"
    ledger = json.loads(ledger_path.read_text()) if ledger_path.exists() else {}
    notes = []
    for source in sorted(notebooks.glob("*.ipynb")):
        copy, digest = target / source.name, _digest(source)
        recorded = ledger.get(source.name)
        if copy.exists() and recorded == digest:
            continue
        if copy.exists() and recorded is not None and _digest(copy) != recorded:
            notes.append(f"{source.name} changed; your edited copy is kept (delete it to refresh)")
            continue
        shutil.copyfile(source, copy)
        ledger[source.name] = digest
    ledger_path.write_text(json.dumps(ledger, indent=1, sort_keys=True))
    return notes


def write_settings(settings: Path) -> None:
    """Write the lab's user settings, keeping any the student changed since."""
    for name, values in QUIET_SETTINGS.items():
        path = settings / name
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(values, indent=1))


def lab_command(
    root: Path, port: int | None, open_browser: bool, extra: Sequence[str] = ()
) -> list[str]:
    """The ``jupyter lab`` command line serving ``root``, news and update checks off."""
    jupyter = shutil.which("jupyter", path=str(Path(sys.executable).parent)) or "jupyter"
    command = [
        jupyter,
        "lab",
        f"--ServerApp.root_dir={root}",
        "--LabApp.news_url=",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]
    if port is not None:
        command.append(f"--port={port}")
    if not open_browser:
        command.append("--no-browser")
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")  # CI and containers run as root
    return command + list(extra)


def lab_environment(lab: Path) -> dict[str, str]:
    """The environment for JupyterLab: settings and workspaces live under ``lab``.

    Its config path leads with cachelab's Jupyter config, so that an HTML export (the
    File menu's, or ``jupyter nbconvert`` in the lab's terminal) shows each widget's
    self-contained HTML: it plays offline, where a live widget view needs a CDN.
    """
    config_path = os.pathsep.join(
        p for p in (str(JUPYTER_CONFIG), os.environ.get("JUPYTER_CONFIG_PATH", "")) if p
    )
    return os.environ | {
        "JUPYTERLAB_SETTINGS_DIR": str(lab / "settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(lab / "workspaces"),
        "JUPYTER_CONFIG_PATH": config_path,
    }


def prepare(notebooks: Path) -> Path:
    """Refresh the working copy and the settings; return the folder to serve."""
    lab = workdir(notebooks)
    for note in sync_copies(notebooks, lab / "notebooks"):
        print("cachelab lab:", note)
    write_settings(lab / "settings")
    return lab / "notebooks"


def _lab(args: argparse.Namespace, extra: Sequence[str]) -> int:
    """Serve the working copy (replaces this process)."""
    root = prepare(args.notebooks)
    command = lab_command(root, args.port, not args.no_browser, extra)
    redis_url = os.environ.get("REDIS_URL")
    print("cachelab lab:", f"REDIS_URL={redis_url}" if redis_url else "embedded fakeredis")
    print(f"cachelab lab: serving a working copy in {root} (the tracked notebooks stay clean)")
    print("JupyterLab prints the URL to open (with its token) below.", flush=True)
    os.execve(command[0], command, lab_environment(workdir(args.notebooks)))


def _site(args: argparse.Namespace, extra: Sequence[str]) -> int:
    """Build the static site."""
    from cachelab.lab.site import build_site

    index = build_site(args.notebooks, args.out, timeout=args.timeout, only=args.only)
    print(f"cachelab site: open {index}")
    return 0


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


def _number(kind: Callable[[str], float], low: float, what: str) -> Callable[[str], Any]:
    """An argparse type: ``kind(text)`` and at least ``low`` (finite), else a clear error."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {what}, not {text!r}") from None
        if not (math.isfinite(value) and value >= low):
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
        help="serve one CacheNode over a JSON line protocol on 127.0.0.1",
        description="Run one CacheNode in this process and serve the JSON line protocol of "
        "cachelab.harness.nodeproc on 127.0.0.1. The first line printed is "
        "'cachelab-node listening on 127.0.0.1:PORT'. 'quit' or SIGTERM ends it.",
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
    node.add_argument("--port", type=count, default=0, help="0 (default): a free port")
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
    run.add_argument("--value-size", type=count, default=16, help="characters (default: 16)")
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
            args.name, args.namespace, args.strategy, stripes, args.heartbeat, args.cluster
        )
        node, recorder = build_node(client, options)
    except (NodeError, ValueError, TypeError) as exc:
        client.close()
        return _fail("node", exc)
    try:
        return serve_node(node, recorder, args.port, args.watch_stdin)
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
    """The merged history, one JSON list per line: node, op, key, start, end, version, hit."""
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


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run it."""
    parser = argparse.ArgumentParser(prog="cachelab", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    lab = commands.add_parser("lab", help="start JupyterLab on a working copy of the notebooks")
    lab.add_argument("--notebooks", type=Path, default=NOTEBOOKS)
    lab.add_argument("--port", type=int, default=None)
    lab.add_argument("--no-browser", action="store_true")
    site = commands.add_parser("site", help="execute every notebook into a static HTML site")
    site.add_argument("--notebooks", type=Path, default=NOTEBOOKS)
    site.add_argument("--out", type=Path, default=NOTEBOOKS.parent / "site")
    site.add_argument("--timeout", type=int, default=300, help="seconds per cell")
    site.add_argument("--only", nargs="*", default=[], help="notebook name prefixes, e.g. 02")
    add_process_commands(commands)
    args, extra = parser.parse_known_args(argv)
    if args.command in ("lab", "site") and not args.notebooks.is_dir():
        parser.error(f"no notebooks folder at {args.notebooks}")
    if extra and args.command != "lab":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command in ("lab", "site"):
        return {"lab": _lab, "site": _site}[args.command](args, extra)
    return int(args.run(args))


if __name__ == "__main__":
    raise SystemExit(main())
