"""What importing cachelab costs: no optional or heavy library until it is used, and a missing
extra named with the command that installs it."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import textwrap

import fakeredis
import pytest
import redis

from cachelab.extras import needs_extra
from cachelab.store import fake_server

HEAVY = (
    "fakeredis", "lupa", "numpy", "nbformat", "nbclient", "nbconvert", "jupyter",
    "jupyter_client", "jupyter_core", "jupyterlab", "jupyter_server", "matplotlib",
    "ipywidgets", "anywidget", "IPython", "prometheus_client", "opentelemetry",
)  # fmt: skip
"""Top-level packages an ``import cachelab`` must leave alone (the test also catches any
other ``jupyter*``)."""

# A finder, first on sys.meta_path, that refuses the packages named in BLOCKED as if they
# were not installed (pip uninstall is not an option in a shared venv).
BLOCKER = """
import sys

class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, Blocker())
"""

# Imports what a bare redis-py import brings (redis-py 8 imports asyncio, and opentelemetry
# when it is installed: its business), then the module, and prints what the module added.
ADDED = """
import json, sys

def heavy():
    return {m.split(".")[0] for m in sys.modules
            if m.split(".")[0] in HEAVY or m.startswith("jupyter")}

import redis, redis.asyncio, redis.cluster
before = heavy()
import {module}
added = heavy() - before
"""


def run(code: str) -> str:
    """Run ``code`` in a fresh interpreter without REDIS_URL; its stdout."""
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def added_by(module: str, then: str = "") -> dict[str, list[str]]:
    """The heavy packages ``import module`` adds to a redis-py import, and after ``then``."""
    code = f"HEAVY = {HEAVY!r}\n" + ADDED.replace("{module}", module) + textwrap.dedent(then)
    code += "\nprint(json.dumps({'added': sorted(added), 'after': sorted(heavy() - before)}))"
    out: dict[str, list[str]] = json.loads(run(code).splitlines()[-1])
    return out


def test_import_cachelab_imports_no_heavy_library_until_the_embedded_server_is_used() -> None:
    then = """
    from cachelab import CacheNode, connect
    # authenticated: its scripts need the sha1hex that store.py teaches fakeredis
    r = connect(secret="an import test secret")
    r.set("plain", "v")
    assert r.get("plain") == b"v"
    with CacheNode(r, name="a", namespace="imports") as a, \\
            CacheNode(r, name="b", namespace="imports") as b:
        a.set("k", 1)
        assert b.get("k") == 1
    """
    seen = added_by("cachelab", then)
    assert seen["added"] == []
    # the same probe sees fakeredis once the embedded server is used: the check is not blind
    assert {"fakeredis", "lupa"} <= set(seen["after"])


@pytest.mark.parametrize(
    "module", ["cachelab.sim", "cachelab.metrics", "cachelab.decorators", "cachelab.lab.challenges"]
)
def test_the_libraries_pure_parts_import_no_heavy_library(module: str) -> None:
    assert added_by(module)["added"] == []


@pytest.mark.parametrize(
    ("module", "blocked", "extra"),
    [
        ("cachelab.lab.viz", "anywidget", "lab"),
        ("cachelab.lab.viz", "ipywidgets", "lab"),
        ("cachelab.lab.viz", "matplotlib", "lab"),
        ("cachelab.metrics.prometheus", "prometheus_client", "metrics"),
        ("cachelab.metrics.otel", "opentelemetry", "metrics"),
    ],
)
def test_a_missing_extra_is_named_with_its_pip_command(
    module: str, blocked: str, extra: str
) -> None:
    code = f"BLOCKED = {{{blocked!r}}}\n" + BLOCKER + f"""
try:
    import {module}
except ImportError as exc:
    cause = exc.__cause__
    print(json.dumps([str(exc), exc.name, type(cause).__name__, getattr(cause, "name", None)]))
else:
    raise AssertionError("{blocked} was not blocked")
"""
    message, name, cause, cause_name = json.loads(run("import json\n" + code).splitlines()[-1])
    assert message == (
        f"{module} needs the {extra} extra: pip install 'cachelab[{extra}]' (missing: {blocked})"
    )
    assert name == blocked
    # the original error stays chained, so the traceback still shows which import failed
    assert cause == "ModuleNotFoundError"
    assert cause_name.split(".")[0] == blocked


def test_a_challenge_grades_without_the_lab_extra_and_its_viewer_names_it() -> None:
    code = "BLOCKED = {'anywidget', 'ipywidgets', 'matplotlib'}\n" + BLOCKER + """
from cachelab.lab.challenges import CHALLENGES

grade = CHALLENGES["tell_the_peers"].grade(lambda store, msg, memo: False, shrink=False)
assert not grade.passed and grade.counterexample is not None
try:
    grade.viewer()
except ImportError as exc:
    print(exc)
else:
    raise AssertionError("the viewer was drawn without anywidget")
"""
    assert run(code).splitlines()[-1] == (
        "cachelab.lab.viz needs the lab extra: pip install 'cachelab[lab]' (missing: anywidget)"
    )


def import_for_x(module: str) -> None:
    """Import ``module`` as a module ``x`` of the lab extra would."""
    with needs_extra("lab", "x"):
        importlib.import_module(module)


def test_needs_extra_names_a_third_party_module_only() -> None:
    named = r"^x needs the lab extra: pip install 'cachelab\[lab\]' \(missing: no_such_pkg\)$"
    with pytest.raises(ImportError, match=named):
        import_for_x("no_such_pkg.sub")
    # cachelab's own module missing is a broken install: no extra would help, so unchanged
    with pytest.raises(ModuleNotFoundError, match=r"^No module named 'cachelab\.no_such_module'$"):
        import_for_x("cachelab.no_such_module")


def test_a_fakeredis_client_is_told_from_a_real_servers_without_importing_fakeredis() -> None:
    server = fakeredis.FakeServer()
    assert fake_server(fakeredis.FakeRedis(server=server)) is server
    assert fake_server(fakeredis.FakeAsyncRedis(server=server)) is server
    # never connected: a client's pool knows its server's kind before any round trip
    assert fake_server(redis.Redis(port=1)) is None
    assert fake_server(redis.asyncio.Redis(port=1)) is None


def test_the_public_names_load_on_first_use_and_all_lists_them() -> None:
    import cachelab

    assert sorted(cachelab.__all__) == sorted(cachelab._WHERE)
    for name in cachelab.__all__:  # each resolves, from the module the map names
        home = importlib.import_module(cachelab._WHERE[name])
        assert getattr(cachelab, name) is getattr(home, name)
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        cachelab.nothing  # noqa: B018


def test_the_core_imports_with_redis_py_and_fakeredis_absent() -> None:
    """The rule that the core does no I/O, as its imports show it."""
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in {'redis', 'fakeredis', 'lupa', 'hiredis'}:\n"
        "            raise ModuleNotFoundError(name, name=name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import cachelab.core, cachelab.contract, cachelab.sequence, cachelab.messages\n"
        "core = cachelab.core.NodeCore\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'redis'))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_make_node_chooses_the_tracking_node_without_an_import_of_it() -> None:
    code = (
        "import fakeredis\n"
        "from cachelab import TrackingUnsupported\n"
        "from cachelab.stripes import make_node\n"
        "try:\n"
        "    make_node(fakeredis.FakeRedis(), strategy='tracking')\n"
        "except TrackingUnsupported:\n"
        "    print('TrackingNode')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.strip() == "TrackingNode", done.stderr


def test_flight_left_the_public_names_with_a_deprecation_warning() -> None:
    import cachelab
    from cachelab.core import Ticket

    assert "Flight" not in cachelab.__all__
    with pytest.warns(DeprecationWarning, match="cachelab.Flight is deprecated"):
        assert cachelab.Flight is Ticket


PROTOCOL_STEPS = {
    "lookup", "lookup_entry", "load", "fill", "load_external", "pending",
    "receive", "handle", "subscribed", "replayed", "disconnected", "maintain", "send_beat",
    "synced", "publish_sync", "repair", "offer_sample", "verify_pending",
}  # fmt: skip


@pytest.mark.parametrize("kind", ["CacheNode", "AsyncCacheNode", "TrackingNode", "StripedNode"])
def test_no_protocol_step_is_a_public_name_of_a_node(kind: str) -> None:
    import cachelab

    public = {name for name in dir(getattr(cachelab, kind)) if not name.startswith("_")}
    assert public & PROTOCOL_STEPS == set()
    assert {"get", "set", "delete", "invalidate", "get_or_load", "stats", "close"} <= public


def test_a_node_is_built_by_its_own_class_with_no_dispatch_on_its_arguments() -> None:
    from cachelab import CacheNode

    assert "__new__" not in vars(CacheNode)
