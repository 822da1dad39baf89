"""The hostile suite's harness: a tool run in-process behaves as the same tool run as a new process.

``run_tool`` runs most cases in the pytest process (see ``hostile_helpers``);
these tests hold it to what a subprocess gives for free: the same exit status
and error line, output captured, an uncaught exception's traceback on stderr,
nothing the tool changed in the process left behind, ``nobody``'s file
permissions for ``as_nobody``, and a hang reported as one.
"""
from __future__ import annotations

import logging
import os
import signal
import sys

import hostile_helpers
import pytest
import torch
from hostile_helpers import BAD_IMAGES, expect_error, make_pairs, rgb, run_tool, train_args, write_png

CASES = {  # tool -> arguments of a bad input, built in a folder
    "derain": lambda root: [write_png(root / "in" / "a.png", rgb(20, 20)).parent, "--model", "Identity", "--tile",
                            "-3", "--out", root / "out"],
    "train": lambda root: train_args(make_pairs(root / "train", n=1), make_pairs(root / "val", n=1), root / "ck",
                                     "OPTIM.BETA1", "1.0"),
}


@pytest.mark.parametrize("tool", list(CASES))
def test_in_process_and_subprocess_runs_agree(tool, tmp_path):
    args = CASES[tool](tmp_path)
    inside, outside = run_tool(tool, *args, cwd=tmp_path), run_tool(tool, *args, cwd=tmp_path, subprocess=True)
    assert (inside.rc, inside.stdout) == (outside.rc, outside.stdout) == (1, "")
    assert inside.stderr.splitlines()[-1] == outside.stderr.splitlines()[-1]
    assert inside.stderr.splitlines()[-1].startswith(("error:", "config error:"))
    assert "Traceback" not in inside.output + outside.output


NASTY = '''
import logging, os, signal, sys, warnings
import torch
logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
logging.getLogger().addHandler(logging.FileHandler("tool.log"))
logging.getLogger("some.tool").setLevel(logging.DEBUG)
logging.raiseExceptions = False
signal.signal(signal.SIGTERM, lambda *a: None)
signal.signal(signal.SIGINT, signal.SIG_IGN)
torch.use_deterministic_algorithms(True)
torch.backends.cudnn.benchmark = True
torch.set_num_threads(3)
torch.manual_seed(1234)
os.environ["CUBLAS_WORKSPACE_CONFIG"] = ":4096:8"
os.environ.pop("HOME", None)
sys.path.insert(0, "/nowhere")
sys.excepthook = None
os.chdir("/")
print("to stdout")
logging.info("logged %s", sys.argv[1:])
warnings.warn("a warning of the tool")
sys.exit(sys.argv[1] if sys.argv[1:] else None)
'''


@pytest.fixture
def script(tmp_path, monkeypatch):
    """``write(code)``: a tool of that code (in ``folder``), runnable by ``run_tool("probe", ...)``."""
    def write(code: str, folder=tmp_path) -> str:
        path = folder / "probe.py"
        path.write_text(code)
        monkeypatch.setitem(hostile_helpers.TOOLS, "probe", str(path))
        return "probe"

    return write


def _state() -> dict:
    root = logging.getLogger()
    return {"cwd": os.getcwd(), "argv": list(sys.argv), "path": list(sys.path), "env": dict(os.environ),
            "handlers": list(root.handlers), "level": root.level, "raise": logging.raiseExceptions,
            "tool_level": logging.getLogger("some.tool").level, "excepthook": sys.excepthook,
            "signals": [signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)],
            "deterministic": torch.are_deterministic_algorithms_enabled(),
            "benchmark": torch.backends.cudnn.benchmark, "threads": torch.get_num_threads(),
            "rng": torch.get_rng_state()}


def test_what_a_tool_changes_is_put_back_and_its_output_captured(script, tmp_path):
    tool = script(NASTY)
    before = _state()
    run = run_tool(tool, cwd=tmp_path)
    after = _state()
    assert torch.equal(after.pop("rng"), before.pop("rng"))
    assert after == before
    assert run.rc == 0 and run.stdout == "to stdout\n"
    assert "INFO logged []" in run.stderr and "UserWarning: a warning of the tool" in run.stderr
    assert (tmp_path / "tool.log").read_text() == "logged []\n"  # its handler was closed: all written


@pytest.mark.parametrize("code,rc,says", [
    ("import sys; sys.exit('error: the culprit')", 1, "error: the culprit"),
    ("import sys; sys.exit(143)", 143, None),
    ("import sys; sys.exit()", 0, None),
    ("print('done')", 0, None),
    ("raise KeyError('a genuine bug')", 1, "KeyError: 'a genuine bug'"),
    ("raise KeyboardInterrupt", -signal.SIGINT, "KeyboardInterrupt"),
])
def test_exit_statuses_as_the_interpreter_gives_them(script, tmp_path, code, rc, says):
    run = run_tool(script(code), cwd=tmp_path)
    assert run.rc == rc, run.output
    if says:
        assert says in run.stderr
    assert ("Traceback" in run.stderr) == ("raise" in code)


@pytest.mark.skipif(os.geteuid() != 0, reason="as anyone but root the tool runs as its user already")
def test_as_nobody_permission_bits_apply_and_root_comes_back(script, world):
    secret = world / "secret.txt"
    secret.write_text("root's")
    secret.chmod(0)
    tool = script(f"import os\nprint(os.getuid(), os.geteuid(), os.access({str(secret)!r}, os.R_OK))\n"
                  f"open({str(secret)!r}).read()\n", folder=world)  # where nobody may read it
    run = run_tool(tool, cwd=world, as_nobody=True)
    assert run.stdout == f"{hostile_helpers.NOBODY} {hostile_helpers.NOBODY} False\n"
    assert "PermissionError" in run.stderr and run.rc == 1
    assert (os.getuid(), os.geteuid(), os.getegid()) == (0, 0, 0) and secret.read_text() == "root's"


@pytest.fixture
def through_the_worker(monkeypatch):
    """``as_nobody`` cases sent to the shared unprivileged interpreter, as where this process cannot become
    ``nobody`` itself (the interpreter under /root, as on CI)."""
    if os.geteuid() != 0:
        pytest.skip("as anyone but root the tool runs as its user already")

    def cannot(script):
        raise hostile_helpers._CannotDropRoot

    monkeypatch.setattr(hostile_helpers, "_without_root", cannot)


def test_the_nobody_worker_is_one_interpreter_with_the_callers_environment(script, world, monkeypatch,
                                                                         through_the_worker):
    tool = script("import os, sys\nprint(os.getpid(), os.getuid(), os.environ.get('PROBE'), os.getcwd())\n"
                  "os.environ['PROBE'] = 'left by the tool'\nos.chdir('/')\nsys.exit(3)\n", folder=world)
    monkeypatch.setenv("PROBE", "first")
    first = run_tool(tool, cwd=world, as_nobody=True)
    monkeypatch.setenv("PROBE", "second")
    second = run_tool(tool, cwd=world, as_nobody=True)
    assert (first.rc, second.rc) == (3, 3), first.output + second.output
    pid, uid, env, cwd = first.stdout.split()
    assert second.stdout.split() == [pid, uid, "second", cwd]  # same process; nothing the first run left
    assert int(pid) != os.getpid() and int(uid) == hostile_helpers.NOBODY and env == "first"
    assert cwd == str(world) and os.environ["PROBE"] == "second"


def test_the_nobody_worker_applies_permission_bits_and_reports_a_hang(script, world, through_the_worker):
    secret = world / "secret.txt"
    secret.write_text("root's")
    secret.chmod(0)
    tool = script(f"import os\nprint(os.access({str(secret)!r}, os.R_OK))\nopen({str(secret)!r}).read()\n",
                  folder=world)
    run = run_tool(tool, cwd=world, as_nobody=True)
    assert run.stdout == "False\n" and "PermissionError" in run.stderr and run.rc == 1
    assert "Traceback" in run.stderr and secret.read_text() == "root's"
    fifo = world / "pipe"
    os.mkfifo(fifo)
    fifo.chmod(0o666)
    tool = script(f"open({str(fifo)!r}).read()\n", folder=world)  # blocks until a writer comes: never
    with pytest.raises(pytest.fail.Exception, match="hang: probe.py"):
        run_tool(tool, cwd=world, timeout=0.5, as_nobody=True)
    assert run_tool(script("print('still serving')\n", folder=world), cwd=world, as_nobody=True).stdout == \
        "still serving\n"


def test_a_hang_fails_the_test_instead_of_blocking(script, tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    tool = script(f"open({str(fifo)!r}).read()\n")  # blocks until a writer comes: never
    with pytest.raises(pytest.fail.Exception, match="hang: probe.py"):
        run_tool(tool, cwd=tmp_path, timeout=0.5)
    assert signal.getsignal(signal.SIGALRM) in (signal.SIG_DFL, None) and signal.getitimer(signal.ITIMER_REAL)[0] == 0


def test_a_bad_image_case_costs_no_process(tmp_path, monkeypatch):
    """The default path starts no interpreter (what made the suite slow)."""
    def no_process(*args, **kwargs):
        raise AssertionError("a subprocess was started")

    monkeypatch.setattr(hostile_helpers.subprocess, "run", no_process)
    monkeypatch.setattr(hostile_helpers.subprocess, "Popen", no_process)
    photos = tmp_path / "photos"
    (photos / "bad.png").parent.mkdir()
    (photos / "bad.png").write_bytes(BAD_IMAGES["truncated"]())
    expect_error(run_tool("derain", photos, "--model", "Identity", "--out", tmp_path / "out", cwd=tmp_path), "bad.png")
