"""One subscriber process of ``benchmarks/scaling.py``, both ends of its pipe.

The child (``python -m benchmarks.scaling_member KIND URL TARGET``) holds one subscriber:
``cachelab``, a ``CacheNode(strategy="invalidate")`` of namespace TARGET whose events hook
stamps each ``"applied"`` message by its version; or ``raw``, a plain redis-py PubSub on
channel TARGET stamping each message by the write number it carries. It speaks JSON lines
(never pickle): it prints ``{"ready": true}`` once subscribed; ``{"expect": n, "timeout": s}``
on stdin waits until n writes arrived (or s seconds passed) and answers ``{"have": m, "cpu":
c}``, c the process's CPU seconds so far;
``{"stop": true}``, or the end of stdin, closes the subscriber and answers
``{"arrivals": [[id, t], ...]}``.

The stamps are ``time.monotonic()``: on Linux that is CLOCK_MONOTONIC, one clock for every
process of the machine, so the parent can subtract its own write times from them.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

import redis

from cachelab import CacheNode

KINDS = ("cachelab", "raw")
_ROOT = Path(__file__).resolve().parents[1]  # the checkout whose benchmarks and cachelab run
_POLL = 0.001  # how often an "expect" looks at the count: no Redis traffic, only a dict's size

Arrivals = dict[int, float]


# -- the child ---------------------------------------------------------------------------


def cachelab_subscriber(url: str, namespace: str, arrivals: Arrivals) -> CacheNode:
    """A node whose events hook stamps every write it applies, by version."""

    def stamp(node: str, kind: str, key: str, version: int) -> None:
        now = time.monotonic()  # first: the hook's own work is not part of the delay
        if kind == "applied":
            arrivals.setdefault(version, now)

    client = redis.Redis.from_url(url)
    return CacheNode(client, name=f"m{os.getpid()}", namespace=namespace, events=stamp)


class RawSubscriber:
    """A plain redis-py PubSub on one channel, read by a thread that stamps each message."""

    def __init__(self, url: str, channel: str, arrivals: Arrivals) -> None:
        self._client = redis.Redis.from_url(url)
        self._pubsub = self._client.pubsub()
        self._pubsub.subscribe(channel)
        confirmed = self._pubsub.get_message(timeout=10.0)  # SUBSCRIBE's reply: now it hears
        if confirmed is None or confirmed["type"] != "subscribe":
            raise RuntimeError(f"no subscription to {channel!r}: {confirmed!r}")
        self._arrivals = arrivals
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="scaling-raw", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        """Stamp each message by the number it carries, until stopped."""
        while not self._stop.is_set():
            message = self._pubsub.get_message(timeout=0.05)
            if message is not None and message["type"] == "message":
                now = time.monotonic()
                self._arrivals.setdefault(int(json.loads(message["data"])["i"]), now)

    def close(self) -> None:
        """Stop and join the thread, then close the connection."""
        self._stop.set()
        self._thread.join()
        self._pubsub.close()
        self._client.close()


def _wait_for(arrivals: Arrivals, count: int, timeout: float) -> int:
    """How many writes arrived, once ``count`` did or ``timeout`` passed."""
    deadline = time.monotonic() + timeout
    while len(arrivals) < count and time.monotonic() < deadline:
        time.sleep(_POLL)
    return len(arrivals)


def _say(message: dict[str, Any]) -> None:
    """One JSON line to the parent."""
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def serve(kind: str, url: str, target: str) -> None:
    """Subscribe, answer the parent's requests, then report every arrival."""
    arrivals: Arrivals = {}
    subscriber = (
        cachelab_subscriber(url, target, arrivals)
        if kind == "cachelab"
        else RawSubscriber(url, target, arrivals)
    )
    try:
        _say({"ready": True})
        for line in sys.stdin:
            request = json.loads(line)
            if "expect" not in request:
                break
            have = _wait_for(arrivals, int(request["expect"]), float(request["timeout"]))
            _say({"have": have, "cpu": time.process_time()})
    finally:
        subscriber.close()
    _say({"arrivals": sorted(arrivals.items())})


def main(argv: list[str]) -> None:
    """``KIND URL TARGET``: KIND is cachelab (TARGET a namespace) or raw (TARGET a channel)."""
    if len(argv) != 3 or argv[0] not in KINDS:
        raise SystemExit(
            f"usage: python -m benchmarks.scaling_member {{{','.join(KINDS)}}} URL TARGET"
        )
    serve(*argv)


# -- the parent --------------------------------------------------------------------------


class Member:
    """The parent's handle on one subscriber process."""

    def __init__(self, kind: str, url: str, target: str) -> None:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
        env = dict(
            os.environ, PYTHONPATH=os.pathsep.join([str(_ROOT), os.environ.get("PYTHONPATH", "")])
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.scaling_member", kind, url, target],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=_ROOT,
            env=env,
            # Its own session: a Ctrl-C reaches the parent alone, which ends it by closing stdin.
            start_new_session=True,
        )

    def ready(self, timeout: float = 60.0) -> None:
        """Wait until the process says it is subscribed."""
        if not self._ask(None, timeout).get("ready"):
            raise RuntimeError("a member did not say it was ready")

    def expect(self, count: int, timeout: float = 60.0) -> tuple[int, float]:
        """Wait until ``count`` writes reached the process; how many did, and the CPU seconds
        the process has used so far (its own work per message, the subscriber's side)."""
        answer = self._ask({"expect": count, "timeout": timeout}, timeout + 10.0)
        return int(answer["have"]), float(answer["cpu"])

    def stop(self, timeout: float = 30.0) -> Arrivals:
        """Close the subscriber; the time each write reached it, by id."""
        answer = self._ask({"stop": True}, timeout)
        self.proc.wait(timeout)
        return {int(i): float(t) for i, t in answer["arrivals"]}

    def end(self) -> None:
        """Make sure the process is gone: ask (end of stdin), then kill."""
        if self.proc.poll() is None:
            try:
                _close(self.proc.stdin)
                self.proc.wait(5.0)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        _close(self.proc.stdout)

    def _ask(self, request: dict[str, Any] | None, timeout: float) -> dict[str, Any]:
        """Send one request (None: only listen) and read the one-line answer."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        if request is not None:
            self.proc.stdin.write(json.dumps(request).encode() + b"\n")
            self.proc.stdin.flush()
        # One request, one line: nothing is left in the reader's buffer that select cannot see.
        if not select.select([self.proc.stdout], [], [], timeout)[0]:
            raise TimeoutError(f"member {self.proc.pid} did not answer within {timeout}s")
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"member {self.proc.pid} exited (code {self.proc.poll()})")
        answer: dict[str, Any] = json.loads(line)
        return answer


def _close(stream: IO[bytes] | None) -> None:
    """Close a pipe whose other end may be gone already."""
    if stream is not None:
        with contextlib.suppress(OSError):
            stream.close()


if __name__ == "__main__":
    main(sys.argv[1:])
