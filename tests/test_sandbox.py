"""Hostile programs against the chapter 08 sandbox: each must leave this process, the machine and later runs intact.
Every run uses small limits so the whole file stays fast."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import psutil
import pytest

from slmlab.execution import sandbox
from slmlab.execution.sandbox import LAYERS_ENV, SandboxError, SandboxLimits, resolve_rlimits, run_python, sandbox_report

FAST = SandboxLimits(cpu_seconds=1, wall_seconds=3.0, memory_mb=256, output_bytes=65_536)
NEARLY_EMPTY_ENV = {"PATH", "HOME", "TMPDIR", "LANG", "PWD", "LC_CTYPE"}


def _processes_mentioning(marker: str) -> list[int]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        if any(marker in part for part in process.info["cmdline"] or ()):
            found.append(process.pid)
    return found


def _cwd_then(body: str) -> str:
    return "import os\nprint(os.getcwd(), flush=True)\n" + body


# --- a normal program ---------------------------------------------------------------------------------------------


def test_normal_program_reads_stdin_and_writes_stdout():
    result = run_python("name = input()\nprint('hello', name[::-1])\n", stdin="abc\n", limits=FAST)
    assert (result.status, result.returncode, result.stdout, result.truncated, result.killed_by) == (
        "ok",
        0,
        "hello cba\n",
        False,
        None,
    )


def test_cwd_is_a_fresh_folder_that_is_removed_afterwards():
    result = run_python("import os\nopen('mine.txt', 'w').write('x')\nprint(os.getcwd())\nprint(os.listdir('.'))\n", limits=FAST)
    cwd, listing = result.stdout.splitlines()
    assert result.status == "ok"
    assert "slmlab-sandbox-" in cwd and sorted(eval(listing)) == ["main.py", "mine.txt"]
    assert not os.path.exists(cwd)


def test_folder_is_removed_even_when_the_program_locks_it():
    result = run_python(
        "import os\nos.makedirs('a/b')\nopen('a/b/f', 'w').close()\nos.chmod('a/b', 0)\nos.chmod('a', 0)\nprint(os.getcwd())\n",
        limits=FAST,
    )
    assert result.status == "ok"
    assert not os.path.exists(result.stdout.strip())


def test_extra_files_are_importable_and_bad_names_refused():
    result = run_python(
        "import helper\nprint(helper.twice(21))\n", files={"helper.py": "def twice(x):\n    return 2 * x\n"}, limits=FAST
    )
    assert result.stdout == "42\n"
    with pytest.raises(SandboxError, match="leaves the working folder"):
        run_python("pass", files={"../escape.py": ""}, limits=FAST)


def test_environment_is_nearly_empty(monkeypatch):
    monkeypatch.setenv("SLMLAB_TEST_SECRET", "hunter2-env")
    result = run_python("import os\nprint(sorted(os.environ))\n", limits=FAST)
    assert set(eval(result.stdout)) <= NEARLY_EMPTY_ENV


def test_traceback_names_main_py_and_its_line():
    result = run_python("x = 1\n\n1 / 0\n", limits=FAST)
    assert (result.status, result.returncode) == ("error", 1)
    assert 'main.py", line 3' in result.stderr and "ZeroDivisionError" in result.stderr
    assert "<string>" not in result.stderr
    syntax = run_python("def f(:\n", limits=FAST)
    assert syntax.status == "error" and "SyntaxError" in syntax.stderr and "main.py" in syntax.stderr


def test_unread_large_stdin_does_not_hang():
    result = run_python("print('done')\n", stdin="y" * 1_000_000, limits=FAST)
    assert (result.status, result.stdout) == ("ok", "done\n")


def test_report_lists_the_active_layers():
    report = sandbox_report()
    assert report["audit_hook"] is True
    assert {"RLIMIT_CPU", "RLIMIT_FSIZE", "RLIMIT_NOFILE", "RLIMIT_NPROC", "RLIMIT_CORE"} <= set(report["rlimits"])
    assert set(report) >= {"namespace", "uid_drop", "rlimits", "audit_hook", "notes"}
    if sys.platform.startswith("linux") and os.geteuid() == 0 and sandbox.shutil.which("unshare"):
        assert report["namespace"] is not None and report["uid_drop"] is not None


# --- hostile programs ---------------------------------------------------------------------------------------------
# Each runs twice: under the strongest layers this machine has, and under rlimits and the audit hook alone
# (LAYERS_ENV=plain), as on a machine without unshare or user namespaces. Both must contain it.


@pytest.fixture(params=["strongest", "plain"])
def layers(request, monkeypatch) -> str:
    if request.param == "plain":
        monkeypatch.setenv(LAYERS_ENV, "plain")
    else:
        monkeypatch.delenv(LAYERS_ENV, raising=False)
    return request.param


def test_plain_layers_are_named_in_the_report(monkeypatch):
    monkeypatch.setenv(LAYERS_ENV, "plain")
    report = sandbox_report()
    assert (report["launch"], report["namespace"], report["uid_drop"], report["audit_hook"]) == ("plain", None, None, True)


def test_what_rlimits_and_the_hook_alone_do_not_stop_is_reading_the_accounts_files(layers, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("hunter2-file")
    secret.chmod(0o600)
    result = run_python(f"print(open({str(secret)!r}).read())\n", limits=FAST)
    if layers == "plain":  # the program runs as this account, and the hook refuses writes outside its folder, not reads
        assert result.stdout == "hunter2-file\n"
    elif sandbox_report()["uid_drop"] is not None:  # as nobody, the file of another account is out of reach
        assert result.status == "error" and "hunter2-file" not in result.stdout and "PermissionError" in result.stderr


def test_infinite_loop_hits_the_cpu_limit_and_leaves_nothing_behind(layers):
    result = run_python(_cwd_then("while True:\n    pass\n"), limits=FAST)
    assert result.status in ("cpu_limit", "timeout")
    assert result.wall_seconds < FAST.wall_seconds + 1
    assert _processes_mentioning(result.stdout.strip()) == []


def test_sleeping_program_hits_the_wall_clock(layers):
    limits = SandboxLimits(cpu_seconds=1, wall_seconds=0.5, memory_mb=256)
    result = run_python(_cwd_then("import time\ntime.sleep(30)\n"), limits=limits)
    assert (result.status, result.killed_by, result.returncode) == ("timeout", "wall_clock", -signal.SIGKILL)
    assert result.wall_seconds < 2
    assert _processes_mentioning(result.stdout.strip()) == []


FORK_BOMBS = {
    "os.fork": "import os\nwhile True:\n    os.fork()\n",
    "subprocess": "import subprocess, sys\nwhile True:\n    subprocess.Popen([sys.executable, '-c', 'pass'])\n",
    "multiprocessing": "import multiprocessing as mp, time\nwhile True:\n    mp.Process(target=time.sleep, args=(9,)).start()\n",
    "fork_exec": "import multiprocessing.util as u, sys\nu.spawnv_passfds(sys.executable, [sys.executable, '-c', 'pass'], [])\n",
    "os.system": "import os\nos.system('sleep 60 &')\n",
    "pty": "import pty\npty.fork()\n",
    "posix_spawn": "import os\nos.posix_spawn('/bin/sleep', ['sleep', '60'], {})\n",
    "exec": "import os\nos.execv('/bin/sh', ['sh', '-c', 'sleep 60'])\n",
}


@pytest.mark.parametrize("kind", sorted(FORK_BOMBS))
def test_fork_bombs_are_blocked_and_the_machine_recovers(kind, layers):
    before = len(psutil.pids())
    result = run_python(_cwd_then(FORK_BOMBS[kind]), limits=FAST)
    assert result.status == "blocked", result.stderr
    assert "refused" in result.stderr
    assert _processes_mentioning(result.stdout.strip()) == []
    assert len(psutil.pids()) <= before + 5  # others share this machine: allow a little noise


@pytest.mark.parametrize(
    "source",
    [
        "x = bytearray(2 * 1024 ** 3)\n",
        "chunks = []\nwhile True:\n    chunks.append(bytearray(50 * 1024 ** 2))\n",
    ],
)
def test_memory_hog_reports_memory(source, layers):
    result = run_python(source, limits=FAST)
    assert result.status == "memory", (result.status, result.stderr[-500:])


def test_a_gigabyte_of_output_is_capped_and_ends_fast(layers):
    started = time.monotonic()
    result = run_python("while True:\n    print('x' * 10**6)\n", limits=FAST)
    assert result.status == "output_limit" and result.killed_by == "output_limit"
    assert result.truncated and len(result.stdout) == FAST.output_bytes
    assert time.monotonic() - started < 3


def test_output_a_little_over_the_cap_is_truncated_but_ok():
    result = run_python("print('y' * 100_000)\n", limits=FAST)
    assert (result.status, result.truncated, len(result.stdout)) == ("ok", True, FAST.output_bytes)


@pytest.mark.parametrize(
    "attack",
    [
        "os.remove(CANARY)",
        "open(CANARY, 'w').write('owned')",
        "open(CANARY, 'a').write('owned')",
        "os.rename(CANARY, CANARY + '.moved')",
        "os.truncate(CANARY, 0)",
        "shutil.rmtree(os.path.dirname(CANARY))",
        "open(os.path.join(os.path.dirname(CANARY), 'new.txt'), 'w').write('x')",
        "os.chdir(os.path.dirname(CANARY)); open('new.txt', 'w').write('x')",
        "os.getcwd = lambda: os.path.dirname(CANARY); os.path.abspath = str; open('../new.txt', 'w')",
        "os.symlink(CANARY, 'link'); open('link', 'w').write('owned')",
        "pathlib.Path(CANARY).write_text('owned')",
    ],
)
def test_files_outside_the_folder_survive(tmp_path, attack, layers):
    canary = tmp_path / "canary.txt"
    canary.write_text("precious")
    source = f"import os, shutil, pathlib\nCANARY = {str(canary)!r}\n{attack}\n"
    result = run_python(source, limits=FAST)
    assert result.status in ("blocked", "error"), result
    assert canary.read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["canary.txt"]


def test_parent_environment_stays_secret(monkeypatch, layers):
    monkeypatch.setenv("SLMLAB_TEST_SECRET", "hunter2-proc")
    source = (
        f"import os\nprint(dict(os.environ))\n"
        f"for pid in ({os.getpid()}, os.getppid()):\n"
        f"    try:\n        print(open(f'/proc/{{pid}}/environ', 'rb').read())\n"
        f"    except OSError as exc:\n        print('refused', exc)\n"
    )
    result = run_python(source, limits=FAST)
    assert "hunter2-proc" not in result.stdout + result.stderr
    assert result.status in ("blocked", "ok")


def test_no_connection_reaches_a_local_server(layers):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(1.0)
    arrived: list[object] = []

    def accept() -> None:
        with contextlib.suppress(OSError):
            arrived.append(server.accept())

    thread = threading.Thread(target=accept)
    thread.start()
    port = server.getsockname()[1]
    result = run_python(
        f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1).sendall(b'hi')\n", limits=FAST
    )
    thread.join()
    server.close()
    assert arrived == []
    assert result.status in ("blocked", "error")


@pytest.mark.parametrize(
    "attack",
    [
        "os.kill(os.getppid(), signal.SIGKILL)",
        f"os.kill({os.getpid()}, signal.SIGKILL)",
        f"os.killpg(os.getpgid({os.getpid()}), signal.SIGKILL)",
        "os.killpg(os.getpgid(os.getppid()), signal.SIGKILL)",
        "os.kill(-1, signal.SIGKILL)",
        "os.kill(0, signal.SIGKILL)",
    ],
)
def test_the_parent_survives_kill_attempts(attack, layers):
    result = run_python(f"import os, signal\n{attack}\n", limits=FAST)
    assert result.status in ("blocked", "error", "killed"), result
    assert psutil.pid_exists(os.getpid())


def test_the_program_may_kill_itself():
    result = run_python("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n", limits=FAST)
    assert (result.status, result.returncode, result.killed_by) == ("killed", -signal.SIGKILL, "SIGKILL")


@pytest.mark.parametrize(
    "source",
    [
        "import sys\nsys.exit(0)\nprint('after')\n",
        "import sys\nsys.exit(3)\n",
        "import os\nprint('x', flush=True)\nos._exit(0)\n",
        "import os\nos._exit(4)\n",
        "raise SystemExit('bye')\n",
        "import atexit\ndef late():\n    raise SystemExit(5)\natexit.register(late)\n",
        "import atexit, os\natexit.register(os._exit, 6)\n",
        "raise KeyboardInterrupt\n",
    ],
)
def test_exit_statuses_are_reported_honestly(source, tmp_path):
    (tmp_path / "main.py").write_text(source)
    plain = subprocess.run([sys.executable, "-I", "-B", "main.py"], cwd=tmp_path, capture_output=True, text=True, timeout=10)
    result = run_python(source, limits=FAST)
    assert (result.returncode, result.stdout) == (plain.returncode, plain.stdout)
    assert result.status == ("ok" if plain.returncode == 0 else "killed" if plain.returncode < 0 else "error")


def test_monkey_patched_builtins_stay_in_the_child(layers):
    import builtins

    hostile = "import builtins, os\nbuiltins.len = lambda x: 0\nbuiltins.open = None\nos.getcwd = None\nprint(len('abc'))\n"
    assert run_python(hostile, limits=FAST).stdout == "0\n"
    assert builtins.len("abc") == 3 and builtins.open is open and callable(os.getcwd)
    assert run_python("print(len('abc'))\n", limits=FAST).stdout == "3\n"


def test_patching_the_hook_helpers_does_not_disable_it(tmp_path, layers):
    target = tmp_path / "new.txt"
    source = (
        "import builtins, os, os.path\nbuiltins.any = lambda *a: False\nbuiltins.isinstance = lambda *a: True\n"
        f"os.fspath = lambda p: os.getcwd()\nos.fsdecode = lambda p: os.getcwd()\nopen({str(target)!r}, 'w')\n"
    )
    result = run_python(source, limits=FAST)
    assert result.status == "blocked" and not target.exists()


# --- the audit events the hook relies on (Python 3.11 names) ------------------------------------------------------

AUDITED = {
    "os.system": "os.system('true')",
    "subprocess.Popen": "import subprocess; subprocess.run(['true'])",
    "os.exec": "os.execv('/bin/true', ['true'])",
    "os.posix_spawn": "os.posix_spawn('/bin/true', ['true'], {})",
    "os.fork": "os.fork()",
    "os.forkpty": "os.forkpty()",
    "ctypes.dlopen": "import ctypes; ctypes.CDLL('libc.so.6')",
    "ctypes.dlsym": "import ctypes; ctypes.CDLL(None).fork",
    "ctypes.string_at": "import ctypes; ctypes.string_at(id(1), 8)",
    "_posixsubprocess.fork_exec": "import _posixsubprocess; _posixsubprocess.fork_exec()",
    "import": "import importlib.util as u; u.module_from_spec(u.find_spec('_posixsubprocess'))",
    "socket.connect": "import socket; socket.socket().connect(('127.0.0.1', 9))",
    "socket.bind": "import socket; socket.socket().bind(('127.0.0.1', 0))",
    "socket.sendto": "import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', ('127.0.0.1', 9))",
    "os.symlink": "os.symlink('/etc/passwd', 'p')",
    "os.link": "os.link('/etc/passwd', 'p')",
    "resource.setrlimit": "import resource; resource.setrlimit(resource.RLIMIT_CPU, (100, 100))",
    "gc.get_objects": "import gc; gc.get_objects()",
    "gc.get_referrers": "import gc; gc.get_referrers(os)",
    "object.__setattr__": "import _posixsubprocess as p\np.fork_exec.__code__ = (lambda: 2).__code__",
    "os.remove": "os.remove('/tmp/slmlab-no-such-file')",
    "os.rmdir": "os.rmdir('/tmp/slmlab-no-such-dir')",
    "os.mkdir": "os.mkdir('/tmp/slmlab-no-such-dir')",
    "os.rename": "os.rename('main.py', '/tmp/slmlab-moved.py')",
    "os.chmod": "os.chmod('/tmp', 0o777)",
    "os.chown": "os.chown('/tmp', 0, 0)",
    "os.utime": "os.utime('/tmp')",
    "os.truncate": "os.truncate('/tmp/slmlab-no-such-file', 0)",
    "os.kill": "os.kill(1, 0)",
    "os.killpg": "os.killpg(1, 0)",
    "open": "open('/tmp/slmlab-no-such-file', 'w')",
}


@pytest.mark.parametrize("event", sorted(AUDITED))
def test_audited_action_is_refused_by_name(event, layers):
    result = run_python(f"import os\n{AUDITED[event]}\n", limits=FAST)
    assert result.status == "blocked", result
    assert f"refused {event}" in result.stderr


@pytest.mark.parametrize("module", ["subprocess", "asyncio", "multiprocessing", "ctypes", "numpy"])
def test_importing_process_and_ctypes_modules_is_allowed(module):
    pytest.importorskip(module)
    assert run_python(f"import {module}\nprint('ok')\n", limits=SandboxLimits(memory_mb=512)).stdout == "ok\n"


def test_allowed_actions_inside_the_folder():
    source = (
        "import os, shutil, tempfile, json\nos.mkdir('d')\nopen('d/a', 'w').write('1')\nos.rename('d/a', 'd/b')\n"
        "os.chmod('d/b', 0o600)\nshutil.rmtree('d')\nwith tempfile.TemporaryDirectory() as t:\n"
        "    open(os.path.join(t, 'x'), 'w').write('y')\nprint(json.dumps(sorted(os.listdir('.'))))\n"
        "os.kill(os.getpid(), 0)\nprint(open('/etc/hostname').read() != '' or True)\n"
    )
    result = run_python(source, limits=FAST)
    assert result.status == "ok", result.stderr
    assert result.stdout.splitlines() == ['["main.py"]', "True"]


# --- runs from many threads at once (no preexec_fn: the child sets its own limits) ---------------------------------

LIMITS_PROBE = (
    "import json, os, resource\n"
    "names = ['RLIMIT_CPU', 'RLIMIT_AS', 'RLIMIT_FSIZE', 'RLIMIT_NOFILE', 'RLIMIT_NPROC', 'RLIMIT_CORE']\n"
    "print(json.dumps({'tag': TAG, 'pid': os.getpid(),\n"
    "                  'limits': {n: list(resource.getrlimit(getattr(resource, n))) for n in names}}))\n"
)


def _expected_limits(limits: SandboxLimits) -> dict[str, list[int]]:
    return {name: [soft, hard] for name, _, soft, hard in resolve_rlimits(limits)}


def test_eight_programs_from_four_threads_get_their_own_output_and_limits(monkeypatch):
    seen_kwargs: list[dict] = []
    real_popen = sandbox.subprocess.Popen

    def recording_popen(*args, **kwargs):
        seen_kwargs.append(kwargs)
        return real_popen(*args, **kwargs)

    monkeypatch.setattr(sandbox.subprocess, "Popen", recording_popen)
    own_limits = {name: sandbox.resource.getrlimit(constant) for name, constant, _, _ in resolve_rlimits(FAST)}
    cases = [dataclasses.replace(FAST, cpu_seconds=1 + index % 4, open_files=40 + index, wall_seconds=10.0) for index in range(8)]

    def run(index: int):
        return run_python(f"TAG = {index}\n" + LIMITS_PROBE, limits=cases[index])

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(run, range(8)))
    reports = []
    for index, result in enumerate(results):
        assert result.status == "ok", (result.status, result.stderr[-500:])
        report = json.loads(result.stdout)
        assert report["tag"] == index
        assert report["limits"]["RLIMIT_CPU"] == [cases[index].cpu_seconds, cases[index].cpu_seconds + 1]
        assert report["limits"] == _expected_limits(cases[index])
        reports.append(report)
    assert len({report["pid"] for report in reports}) == 8
    assert seen_kwargs and all(kwargs.get("preexec_fn") is None for kwargs in seen_kwargs)
    assert all(kwargs.get("start_new_session") for kwargs in seen_kwargs)
    assert {name: sandbox.resource.getrlimit(constant) for name, constant, _, _ in resolve_rlimits(FAST)} == own_limits


def test_cpu_bound_program_stops_at_the_cpu_limit_while_others_run():
    spin = SandboxLimits(cpu_seconds=1, wall_seconds=20.0, memory_mb=256)
    with ThreadPoolExecutor(max_workers=2) as pool:
        spinning = pool.submit(run_python, "while True:\n    pass\n", limits=spin)
        quick = pool.submit(run_python, "TAG = 'quick'\n" + LIMITS_PROBE, limits=FAST)
        spun, done = spinning.result(), quick.result()
    assert spun.status == "cpu_limit" and spun.killed_by in ("SIGXCPU", "SIGKILL"), spun
    assert spun.wall_seconds < spin.wall_seconds
    assert done.status == "ok" and '"tag": "quick"' in done.stdout


def test_the_program_cannot_raise_its_own_limits(layers):
    result = run_python("import resource\nresource.setrlimit(resource.RLIMIT_CPU, (1000, 1000))\n", limits=FAST)
    assert result.status == "blocked" and "refused resource.setrlimit" in result.stderr


# --- limits that cannot be set -------------------------------------------------------------------------------------


def test_limit_that_cannot_be_set_is_named(monkeypatch):
    sandbox_report()  # detect the launch layers before breaking setrlimit
    real = sandbox.resource.setrlimit

    def failing(constant, value):
        if constant == sandbox.resource.RLIMIT_NPROC:
            raise ValueError("not supported here")
        return real(constant, value)

    monkeypatch.setattr(sandbox.resource, "setrlimit", failing)
    with pytest.raises(SandboxError, match="RLIMIT_NPROC"):
        resolve_rlimits(FAST)
    with pytest.raises(SandboxError, match="RLIMIT_NPROC"):
        run_python("print('never runs')\n", limits=FAST)


def test_missing_limit_constant_is_named(monkeypatch):
    monkeypatch.delattr(sandbox.resource, "RLIMIT_NPROC")
    with pytest.raises(SandboxError, match="RLIMIT_NPROC"):
        resolve_rlimits(FAST)


def test_non_positive_limit_is_refused():
    with pytest.raises(SandboxError, match="RLIMIT_CPU"):
        resolve_rlimits(SandboxLimits(cpu_seconds=0))
