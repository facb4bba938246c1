"""The ``cachelab`` command's surface: help on every command, clear errors for bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cachelab.harness import cli

ROOT = Path(__file__).resolve().parent.parent

HELP = {
    "lab": ["--dir", "--port", "--no-browser", "--reset", "./cachelab-lab"],
    "site": ["--notebooks", "--out", "--timeout", "--only", "./cachelab-site"],
    "node": ["--url", "--name", "--strategy", "--namespace", "--stripes"],
    "run": ["--procs", "--threads", "--url", "--strategy", "--ops", "--keys", "--faults",
            "--seed", "--json", "--stripes", "--clock-offset", "CLOCK_MONOTONIC"],
    "demo": ["--url", "--nodes", "--seconds", "--steps", "--plain"],
}  # fmt: skip


@pytest.mark.parametrize("command", sorted(HELP))
def test_every_command_has_help_naming_its_options(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main([command, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for option in HELP[command]:
        assert option in out, f"{command} --help does not mention {option}"


BAD = [
    (["run", "--procs", "0"], "--procs: must be a positive integer, not '0'"),
    (["run", "--threads", "two"], "--threads: must be a positive integer, not 'two'"),
    (["run", "--faults", "kill-pubsub,meteor"], "unknown fault 'meteor'"),
    (["run", "--strategy", "psychic"], "invalid choice: 'psychic'"),
    (["run", "--strategy", "tracking"], "invalid choice: 'tracking'"),
    (["run", "--url", "http://localhost:6379"], "not a Redis URL"),
    (["run", "--read-share", "1.5"], "must be a fraction between 0 and 1"),
    (["run", "--value-size", "2000000"], "--value-size: must be an integer from 0 to 1048576"),
    (["run", "--clock-offset", "-1"], "must be a number of seconds >= 0"),
    (["run", "--clock-offset", "nan"], "must be a number of seconds >= 0"),
    (["run", "--url", "redis://127.0.0.1:1/0", "--quiet"], "cannot reach Redis"),
    (["node", "--url", "localhost:6379"], "not a Redis URL"),
    (["node", "--name", "{braces}"], "name must be 1 to 100 printable characters"),
    (["demo", "--nodes", "0"], "--nodes: must be a positive integer"),
    (["demo", "--seconds", "0"], "--seconds: must be a number of seconds >= 0.001"),
    (["run", "--bogus"], "unrecognized arguments: --bogus"),
    (["site", "--bogus"], "unrecognized arguments: --bogus"),
    (["lab", "--reset", "04", "--bogus"], "unrecognized arguments: --bogus"),
    (["lab", "--port", "0"], "--port: must be a positive integer"),
    (["site", "--timeout", "0"], "--timeout: must be a positive integer"),
]


@pytest.mark.parametrize(("argv", "says"), BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_exits_2_with_a_message_and_no_traceback(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        code = cli.main(argv)
    except SystemExit as exit_:  # argparse's own errors
        code = exit_.code  # type: ignore[assignment]
    assert code == 2
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("cachelab") and ": error: " in last


def test_python_dash_m_cachelab_is_the_same_command() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "cachelab", "run", "--help"],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0 and "--procs" in done.stdout and not done.stderr
    bad = subprocess.run(
        [sys.executable, "-m", "cachelab", "run", "--procs", "0"],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    )  # fmt: skip
    assert bad.returncode == 2 and "must be a positive integer" in bad.stderr
    assert "Traceback" not in bad.stderr


JUPYTER = ("jupyter_core", "jupyter_client", "jupyterlab", "jupyter_server", "nbclient",
           "nbconvert", "nbformat", "zmq", "cachelab.lab")  # fmt: skip


@pytest.mark.parametrize("argv", [["node", "--help"], ["run", "--help"], ["--version"]])
def test_the_other_commands_load_no_jupyter_tooling(argv: list[str]) -> None:
    probe = (
        "import sys\n"
        "from cachelab.harness import cli\n"
        f"try: cli.main({argv!r})\n"
        "except SystemExit: pass\n"
        f"print(sorted(m for m in sys.modules if m.startswith({JUPYTER!r})))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          cwd=ROOT, timeout=60, check=True)  # fmt: skip
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_the_lab_command_is_where_jupyter_loads(tmp_path: Path) -> None:
    probe = (
        "import sys\n"
        "from cachelab.harness import cli\n"
        "cli.main(['lab', '--reset', 'no-such-notebook'])\n"
        "print('cachelab.lab.workcopy' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          cwd=tmp_path, timeout=60, check=True)  # fmt: skip
    assert done.stdout.strip() == "True"  # the probe above can see a lazy import
