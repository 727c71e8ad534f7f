"""Run untrusted Python programs in a separate, limited process: chapter 08's code sandbox.
Layers, strongest first: network namespace, unprivileged uid, rlimits, wall clock, capped output, an audit hook."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Mapping
from pathlib import Path

from slmlab.errors import SlmLabError

try:  # POSIX only; without it no limit can be set, which run_python reports as a SandboxError
    import resource
except ImportError:  # pragma: no cover - Windows
    resource = None  # type: ignore[assignment]

NOBODY_UID = 65534
NOBODY_GID = 65534
BLOCKED_EXIT = 86  # exit code of a child whose audit hook refused an action
MEMORY_EXIT = 87  # exit code of a child that ran out of memory (MemoryError reached the top level)
OUTPUT_KILL_FACTOR = 4  # a stream that exceeds this many times output_bytes gets the child killed
_POLL_SECONDS = 0.005
# "plain" runs programs with rlimits and the audit hook only, as on a machine without unshare or user namespaces
# (macOS, a locked-down container): to see what those layers alone contain. Anything else: the strongest that works.
LAYERS_ENV = "SLMLAB_SANDBOX_LAYERS"


class SandboxError(SlmLabError, ValueError):
    """A sandbox limit that cannot be set on this platform (the message names it), or a bad file name."""


@dataclasses.dataclass(frozen=True)
class SandboxLimits:
    """Resource limits of one sandboxed run. network=True lets the audit hook allow sockets; a network namespace,
    where active, still offers nothing but its own loopback."""

    cpu_seconds: int = 2
    wall_seconds: float = 5.0
    memory_mb: int = 512
    file_size_mb: int = 8
    open_files: int = 64
    processes: int = 32
    output_bytes: int = 65_536
    network: bool = False


@dataclasses.dataclass
class SandboxResult:
    """What a run did. status: ok | error | timeout | cpu_limit | memory | output_limit | killed | blocked.

    returncode is the exit code, or minus the signal number when a signal ended the child. killed_by names what
    ended it early: "wall_clock", "output_limit", or the signal (e.g. "SIGXCPU", "SIGKILL"); None for a normal exit.
    """

    status: str
    returncode: int | None
    stdout: str
    stderr: str
    truncated: bool
    wall_seconds: float
    killed_by: str | None


# The child's first code (run with `python -I -B -X utf8 -c`): it sets its own rlimits (passed as "resource:soft:hard"
# items, so the parent needs no preexec_fn, which is unsafe in a threaded parent), installs an audit hook (which refuses
# any later setrlimit), then executes main.py as __main__ with its real file name, so tracebacks name main.py and its
# line numbers. Everything the hook uses is
# bound at install time, so a program that monkey-patches os or builtins cannot change what the hook checks.
# This layer is a tripwire for programs that misbehave inside Python; the kernel layers are the real boundary.
_BOOTSTRAP = r"""
import sys, os
def _limit(spec):
    import resource
    for item in filter(None, spec.split(",")):
        constant, soft, hard = (int(part) for part in item.split(":"))
        current = resource.getrlimit(constant)[1]
        if current != resource.RLIM_INFINITY and hard > current:  # a uid dropped before exec cannot raise a hard limit:
            hard, soft = current, min(soft, current)  # keep the stricter one the account already has
        resource.setrlimit(constant, (soft, hard))

def _install(root, token, network_allowed):
    import pathlib
    import _posixsubprocess
    fspath, getcwd, getpid, getpgrp, readlink = os.fspath, os.getcwd, os.getpid, os.getpgrp, os.readlink
    write, exit_, str_, bytes_, int_, type_, isinstance_ = os.write, os._exit, str, bytes, int, type, isinstance
    any_, len_, bool_, memoryview_ = any, len, bool, memoryview
    pure_fspath, pure_str = pathlib.PurePath.__fspath__, pathlib.PurePath.__str__
    own_pid = str_(getpid())
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
    writable_devices = ("/dev/null", "/dev/stdout", "/dev/stderr")
    always = {"os.system", "os.exec", "os.spawn", "os.posix_spawn", "os.fork", "os.forkpty", "subprocess.Popen",
              "os.symlink", "os.link", "resource.setrlimit", "resource.prlimit", "gc.get_objects", "gc.get_referrers",
              "gc.get_referents", "sys.remote_exec"}
    network = {"socket.connect", "socket.bind", "socket.sendto", "socket.sendmsg"}
    blocked_imports = {"_posixsubprocess", "_xxsubinterpreters", "_interpreters"}  # fresh loads; the first is patched below
    one_path = {"os.remove", "os.rmdir", "os.mkdir", "os.chmod", "os.chown", "os.utime", "os.truncate", "shutil.rmtree"}

    def refuse(event, detail):
        write(2, ("\n" + token + " refused " + event + (": " + detail if detail else "") + "\n").encode("utf-8", "replace"))
        exit_(BLOCKED)

    def text(path):
        kind = type_(path)
        if kind is str_:
            return path
        if isinstance_(path, str_):
            return str_.__str__(path)
        if isinstance_(path, bytes_):
            return bytes_.decode(bytes_(memoryview_(path)), "utf-8", "surrogateescape")
        if isinstance_(path, pathlib.PurePath) and kind.__fspath__ is pure_fspath and kind.__str__ is pure_str:
            return text(fspath(path))
        return None

    def absolute(path, dir_fd=None):
        name = text(path)
        if name is None:
            return None
        if not name.startswith("/"):
            if dir_fd is None or dir_fd == -1:
                base = getcwd()
            else:
                base = readlink("/proc/self/fd/" + str_(dir_fd))
            name = base + "/" + name
        parts = []
        for part in name.split("/"):
            if part == "..":
                if parts:
                    parts.pop()
            elif part and part != ".":
                parts.append(part)
        return "/" + "/".join(parts)

    def inside(path, dir_fd=None):
        if isinstance_(path, int_) and type_(path) is not bool_:
            return True  # an open file descriptor: its opening was checked
        name = absolute(path, dir_fd)
        return name is not None and (name == root or name.startswith(root + "/"))

    def check_open(path, mode, flags):
        if isinstance_(path, int_):
            return
        name = absolute(path)
        if name is None:
            refuse("open", "(path of an unsupported type)")
        parts = name.split("/")
        if len_(parts) > 2 and parts[1] == "proc" and parts[2].isdigit() and parts[2] != own_pid:
            refuse("open", name + " (another process)")
        wants_write = bool_((flags or 0) & write_flags) or (isinstance_(mode, str_) and any_(c in mode for c in "wax+"))
        if wants_write and name not in writable_devices and not inside(name):
            refuse("open", name + " (writing outside the working directory)")

    def hook(event, args):
        try:
            check(event, args)
        except BaseException:  # a check that cannot decide refuses
            refuse(event, "(the check failed)")

    def check(event, args):
        if event in always or (event in network and not network_allowed):
            refuse(event, "")
        elif event.startswith("ctypes.") and not (event == "ctypes.dlopen" and args[0] is None):
            refuse(event, "")  # loading ctypes itself is allowed (numpy needs it); symbols, calls and memory are not
        elif event == "open":
            check_open(args[0], args[1], args[2])
        elif event == "import" and args[0] in blocked_imports:
            refuse("import", args[0])
        elif event in one_path:
            dir_fd = None if event == "os.truncate" else args[-1]
            if not inside(args[0], dir_fd):
                refuse(event, str_(absolute(args[0], dir_fd)))
        elif event == "os.rename":
            if not (inside(args[0], args[2]) and inside(args[1], args[3])):
                refuse(event, "(outside the working directory)")
        elif event == "os.kill":
            if args[0] != getpid():
                refuse(event, "pid " + str_(args[0]))
        elif event == "os.killpg":
            if args[0] == 0 or args[0] != getpgrp():
                refuse(event, "group " + str_(args[0]))
        elif event == "object.__setattr__" and any_(args[0] is own for own in protected):
            refuse(event, "a sandbox function's " + str_(args[1]))

    def fork_exec(*args, **kwargs):
        refuse("_posixsubprocess.fork_exec", "")

    protected = (refuse, text, absolute, inside, check_open, hook, check, fork_exec)
    _posixsubprocess.fork_exec = fork_exec  # the one way to start a process that raises no audit event of its own
    sys.addaudithook(hook)

def _main():
    _limit(sys.argv[4])
    root, token, network_allowed = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
    _install(root, token, network_allowed)
    path = root + "/main.py"
    sys.argv = [path]
    sys.path.insert(0, root)
    import types
    module = types.ModuleType("__main__")
    module.__file__ = path
    module.__builtins__ = __builtins__
    sys.modules["__main__"] = module
    # the program may patch builtins and os: keep what this wrapper needs afterwards
    isinstance_, memory_error, system_exit, write = isinstance, MemoryError, SystemExit, os.write
    exits = (SystemExit, KeyboardInterrupt)
    try:
        with open(path, encoding="utf-8") as handle:
            source = handle.read()
        exec(compile(source, path, "exec"), module.__dict__)
    except exits:
        raise
    except BaseException as exc:
        exc = exc.with_traceback(exc.__traceback__.tb_next)  # drop this wrapper's own frame
        sys.excepthook(type(exc), exc, exc.__traceback__)
        if isinstance_(exc, memory_error):
            write(2, ("\n" + token + " memory\n").encode())
            raise system_exit(MEMORY) from None
        raise system_exit(1) from None

_main()
""".replace("BLOCKED", str(BLOCKED_EXIT)).replace("MEMORY)", f"{MEMORY_EXIT})")

# field name -> (resource constant, unit multiplier); RLIMIT_CORE is always set to 0
_RLIMIT_FIELDS: dict[str, tuple[str, int]] = {
    "cpu_seconds": ("RLIMIT_CPU", 1),
    "memory_mb": ("RLIMIT_AS", 1024 * 1024),
    "file_size_mb": ("RLIMIT_FSIZE", 1024 * 1024),
    "open_files": ("RLIMIT_NOFILE", 1),
    "processes": ("RLIMIT_NPROC", 1),
}
# a documented platform gap: macOS accepts RLIMIT_AS but does not enforce it
_UNENFORCED: dict[str, set[str]] = {"darwin": {"RLIMIT_AS"}}

# runs as root inside the new mount namespace: bind each folder the interpreter needs (its prefix, and the virtual
# environment's when that lies under the same home) to a stage folder, hide the home folder that blocks nobody behind
# an empty tmpfs, move each stage back to its own path, then drop to nobody and exec.
# Arguments: mount, mkdir, the hidden folder, the number of folders N, then N pairs (folder, stage), then the command.
_HIDE_HOME_SCRIPT = (
    'set -e; umask 022; m="$1"; mk="$2"; hidden="$3"; n="$4"; shift 4; i=0; '
    'while [ "$i" -lt "$n" ]; do "$m" --bind "$1" "$2"; eval "p$i="\$1"; s$i="\$2""; shift 2; i=$((i+1)); done; '
    '"$m" -t tmpfs -o mode=0755,size=64k slmlab-sandbox "$hidden"; i=0; '
    'while [ "$i" -lt "$n" ]; do eval "p="\$p$i"; s="\$s$i""; "$mk" -p "$p"; "$m" --move "$s" "$p"; i=$((i+1)); '
    'done; exec "$@"'
)


@dataclasses.dataclass(frozen=True)
class _Launch:
    """How children are started here: the argv prefix before the interpreter, and whether the uid is dropped."""

    name: str
    prefix: tuple[str, ...] = ()
    hide: tuple[str, tuple[str, ...]] | None = None  # (hidden folder, folders brought back) for the mount trick
    namespace: str | None = None
    uid_drop: str | None = None
    notes: tuple[str, ...] = ()

    @property
    def drops_uid(self) -> bool:
        return self.uid_drop is not None


def resolve_rlimits(limits: SandboxLimits) -> list[tuple[str, int, int, int]]:
    """The (name, resource, soft, hard) rlimits of `limits`, checked in the parent; SandboxError names one that cannot be set."""
    if resource is None:
        raise SandboxError("the sandbox needs the POSIX `resource` module to set limits (RLIMIT_CPU and others)")
    skipped = _UNENFORCED.get(sys.platform, set())
    wanted = [(name, getattr(limits, attr) * unit) for attr, (name, unit) in _RLIMIT_FIELDS.items()]
    wanted.append(("RLIMIT_CORE", 0))
    resolved = []
    for name, value in wanted:
        if name in skipped:
            _warn_once(f"{name} is not enforced on {sys.platform}: memory_mb is not a hard limit here")
            continue
        constant = getattr(resource, name, None)
        if constant is None:
            raise SandboxError(f"sandbox limit {name} is not available on {sys.platform}")
        soft, hard = int(value), int(value) + (1 if name == "RLIMIT_CPU" else 0)
        if name != "RLIMIT_CORE" and soft <= 0:
            raise SandboxError(f"sandbox limit {name} must be positive, got {value}")
        try:
            current = resource.getrlimit(constant)
            resource.setrlimit(constant, current)  # a no-op that fails where the platform cannot set this limit
        except (ValueError, OSError) as exc:
            raise SandboxError(f"sandbox limit {name} cannot be set on this platform: {exc}") from exc
        if os.geteuid() != 0 and current[1] != resource.RLIM_INFINITY and hard > current[1]:
            raise SandboxError(f"sandbox limit {name}={hard} exceeds this account's hard limit {current[1]}")
        resolved.append((name, constant, soft, hard))
    return resolved


@functools.lru_cache(maxsize=None)
def _warn_once(message: str) -> None:
    warnings.warn(message, RuntimeWarning, stacklevel=3)


def sandbox_report() -> dict:
    """Which layers are active on this machine (detected once and cached): namespace, uid drop, rlimits, audit hook."""
    launch = _launch()
    limits = SandboxLimits()
    skipped = sorted(_UNENFORCED.get(sys.platform, set()))
    return {
        "platform": sys.platform,
        "launch": launch.name,
        "namespace": launch.namespace,
        "uid_drop": launch.uid_drop,
        "rlimits": [name for name, _, _, _ in resolve_rlimits(limits)],
        "rlimits_not_enforced": skipped,
        "process_group": "own session, killed as a group (SIGKILL) on wall clock or output flood",
        "environment": "empty (PATH, HOME, TMPDIR, LANG only)",
        "audit_hook": True,
        "notes": list(launch.notes),
    }


def _launch() -> _Launch:
    """The launch in force: the strongest that works here, or only rlimits and the hook where LAYERS_ENV says so."""
    if os.environ.get(LAYERS_ENV, "auto") == "plain":
        return _Launch(
            name="plain", notes=(f"{LAYERS_ENV}=plain: no namespace and no uid drop, only rlimits and the audit hook",)
        )
    return _strongest_launch()


@functools.lru_cache(maxsize=1)
def _strongest_launch() -> _Launch:
    """Probe the launch variants from strongest to weakest once; the first that runs a program wins."""
    notes: list[str] = []
    for candidate in _candidates():
        error = _probe(candidate)
        if error is None:
            return dataclasses.replace(candidate, notes=tuple(notes + list(candidate.notes)))
        notes.append(f"{candidate.name} unavailable: {error}")
    return _Launch(name="plain", notes=tuple(notes + ["no namespace and no uid drop: only rlimits and the audit hook"]))


def _candidates() -> list[_Launch]:
    if not sys.platform.startswith("linux"):
        return []
    unshare = shutil.which("unshare")
    if os.geteuid() != 0:
        if unshare is None:
            return []
        return [
            _Launch(
                "user+net namespace",
                (unshare, "--user", "--map-root-user", "--net", "--"),
                namespace="user+net (unshare --user --map-root-user --net)",
            ),
            _Launch(
                "user+net namespace (no uid map)", (unshare, "--user", "--net", "--"), namespace="user+net (unshare --user --net)"
            ),
        ]
    nobody = f"uid {NOBODY_UID}, gid {NOBODY_GID}, no supplementary groups"
    setpriv = shutil.which("setpriv")
    found: list[_Launch] = []
    if unshare is not None:
        found.append(
            _Launch(
                "net namespace + nobody",
                (unshare, "--net", "-S", str(NOBODY_UID), "-G", str(NOBODY_GID), "--"),
                namespace="net (unshare --net)",
                uid_drop=nobody,
            )
        )
        hidden = _blocking_ancestor(Path(sys.base_prefix).resolve()) or _blocking_ancestor(Path(sys.prefix).resolve())
        tools = [shutil.which(tool) for tool in ("mount", "mkdir", "sh")]
        if hidden is not None and None not in tools and setpriv is not None:
            mount, mkdir, sh = tools
            prefix = (unshare, "--net", "--mount", "--", sh, "-c", _HIDE_HOME_SCRIPT, "sh", mount, mkdir)
            kept = _needed_folders(hidden)
            found.append(
                _Launch(
                    "net+mount namespace + nobody",
                    prefix + ("HIDDEN", "FOLDERS") + _drop_to_nobody(setpriv),
                    hide=(str(hidden), kept),
                    namespace=f"net+mount (unshare --net --mount; {hidden} hidden behind an empty tmpfs)",
                    uid_drop=nobody,
                    notes=(
                        f"{hidden} is not traversable by uid {NOBODY_UID}: the interpreter prefix is "
                        "bind-mounted back inside a private mount namespace",
                    ),
                )
            )
    if setpriv is not None:
        found.append(_Launch("nobody", _drop_to_nobody(setpriv), uid_drop=nobody))
    if unshare is not None:
        found.append(
            _Launch(
                "net namespace",
                (unshare, "--net", "--"),
                namespace="net (unshare --net)",
                notes=("running as root without a uid drop: RLIMIT_NPROC does not apply to root",),
            )
        )
    return found


def _drop_to_nobody(setpriv: str) -> tuple[str, ...]:
    """The setpriv prefix that drops to uid nobody before exec (a preexec_fn would be unsafe in a threaded parent)."""
    return (setpriv, f"--reuid={NOBODY_UID}", f"--regid={NOBODY_GID}", "--clear-groups", "--no-new-privs", "--")


def _needed_folders(hidden: Path) -> tuple[str, ...]:
    """The interpreter's prefix, and the virtual environment's when it lies under ``hidden`` too (outermost first)."""
    folders = []
    for prefix in (Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve()):
        if hidden in prefix.parents and not any(Path(kept) == prefix or Path(kept) in prefix.parents for kept in folders):
            folders.append(str(prefix))
    return tuple(folders)


def _blocking_ancestor(path: Path) -> Path | None:
    """The outermost folder above `path` that uid nobody cannot traverse (no x bit for others), if any."""
    for folder in reversed(path.parents):
        info = folder.stat()
        if not info.st_mode & stat.S_IXOTH and info.st_uid != NOBODY_UID:
            return folder if folder != Path("/") else None
    return None


def _probe(candidate: _Launch) -> str | None:
    """None when `candidate` runs a program that writes in its working folder, else what went wrong."""
    try:
        result = _run(
            candidate, "open('probe.txt', 'w').write('ok')\nprint(open('probe.txt').read())\n", "", SandboxLimits(), None
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return str(exc)
    if result.status == "ok" and result.stdout.strip() == "ok":
        return None
    return f"probe ended {result.status} (rc {result.returncode}): {result.stderr.strip()[-300:]}"


def run_python(
    source: str, stdin: str = "", limits: SandboxLimits = SandboxLimits(), files: Mapping[str, str] | None = None
) -> SandboxResult:
    """Run `source` as main.py (plus `files`) in a fresh temporary folder under every sandbox layer available here."""
    return _run(_launch(), source, stdin, limits, files)


def _run(launch: _Launch, source: str, stdin: str, limits: SandboxLimits, files: Mapping[str, str] | None) -> SandboxResult:
    rlimits = resolve_rlimits(limits)
    base = Path(tempfile.mkdtemp(prefix="slmlab-sandbox-"))
    try:
        work = _prepare_folder(base, source, files or {}, launch.drops_uid)
        token = _token()
        return _execute(_argv(launch, base, work, token, limits, rlimits), token, work, stdin, limits)
    finally:
        _remove_tree(base)


def _prepare_folder(base: Path, source: str, files: Mapping[str, str], drop_uid: bool) -> Path:
    work = base / "work"
    work.mkdir()
    for index in range(2):  # the mount trick's stage folders (at most the interpreter's and the environment's)
        (base / f"stage{index}").mkdir()
    for name, text in {**files, "main.py": source}.items():
        target = (work / name).resolve()
        if work.resolve() not in target.parents:
            raise SandboxError(f"sandbox file name {name!r} leaves the working folder")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    if drop_uid:
        os.chmod(base, 0o755)
        for folder, dirs, names in os.walk(work):
            for entry in [folder, *(os.path.join(folder, n) for n in dirs + names)]:
                os.chown(entry, NOBODY_UID, NOBODY_GID)
    return work.resolve()


def _argv(
    launch: _Launch, base: Path, work: Path, token: str, limits: SandboxLimits, rlimits: list[tuple[str, int, int, int]]
) -> list[str]:
    prefix = list(launch.prefix)
    if launch.hide is not None:
        pairs = [item for index, folder in enumerate(launch.hide[1]) for item in (folder, str(base / f"stage{index}"))]
        at = prefix.index("HIDDEN")
        prefix = prefix[:at] + [launch.hide[0], str(len(launch.hide[1])), *pairs] + prefix[at + 2 :]
    spec = ",".join(f"{constant}:{soft}:{hard}" for _, constant, soft, hard in rlimits)
    return prefix + [
        sys.executable,
        "-I",
        "-B",
        "-X",
        "utf8",
        "-c",
        _BOOTSTRAP,
        str(work),
        token,
        "1" if limits.network else "0",
        spec,
    ]


def _token() -> str:
    return "slmlab-sandbox-" + secrets.token_hex(8)


class _Capture(threading.Thread):
    """Reads one pipe to its end, keeps the first `cap` bytes and flags a flood of more than OUTPUT_KILL_FACTOR × cap."""

    def __init__(self, fd: int, cap: int, token: bytes, on_flood) -> None:
        super().__init__(daemon=True)
        self.fd, self.cap, self.token, self.on_flood = fd, cap, token, on_flood
        self.kept = bytearray()
        self.total = 0
        self.saw_token = False

    def run(self) -> None:
        tail = b""
        while chunk := os.read(self.fd, 65_536):
            self.total += len(chunk)
            if len(self.kept) < self.cap:
                self.kept += chunk[: self.cap - len(self.kept)]
            if not self.saw_token and self.token in tail + chunk:
                self.saw_token = True
            tail = chunk[-len(self.token) :]
            if self.total > OUTPUT_KILL_FACTOR * self.cap:
                self.on_flood()
                break
        os.close(self.fd)

    def text(self) -> str:
        return self.kept.decode("utf-8", "replace")


def _execute(argv: list[str], token: str, work: Path, stdin: str, limits: SandboxLimits) -> SandboxResult:
    """Start the child without a preexec_fn (safe from threads: rlimits are set by the bootstrap itself) and watch it."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(work), "TMPDIR": str(work), "LANG": "C.UTF-8"}
    started = time.monotonic()
    process = subprocess.Popen(
        argv,
        cwd=work,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        close_fds=True,
    )
    reason: list[str] = []
    lock = threading.Lock()
    reaped: list[bool] = []

    def stop(why: str) -> None:
        with lock:
            if not reason:
                reason.append(why)
            _kill_group(process.pid, leader_alive=not reaped)

    readers = [
        _Capture(os.dup(stream.fileno()), limits.output_bytes, token.encode(), lambda: stop("output_limit"))
        for stream in (process.stdout, process.stderr)
    ]
    process.stdout.close()
    process.stderr.close()
    for reader in readers:
        reader.start()
    threading.Thread(target=_feed, args=(process.stdin, stdin), daemon=True).start()
    status, usage = _wait(process, started + limits.wall_seconds, stop, lock, reaped)
    _kill_group(process.pid, leader_alive=False)  # whatever the program left behind in its group
    for reader in readers:
        reader.join(timeout=1.0)
    out, err = readers
    return SandboxResult(
        status=_classify(status, usage, reason, limits, err.saw_token, err.text()),
        returncode=os.waitstatus_to_exitcode(status),
        stdout=out.text(),
        stderr=err.text(),
        truncated=out.total > limits.output_bytes or err.total > limits.output_bytes,
        wall_seconds=round(time.monotonic() - started, 3),
        killed_by=reason[0] if reason else (signal.Signals(os.WTERMSIG(status)).name if os.WIFSIGNALED(status) else None),
    )


def _feed(pipe, text: str) -> None:
    try:
        pipe.write(text.encode("utf-8"))
        pipe.close()
    except (BrokenPipeError, OSError, ValueError):
        pass


def _wait(process: subprocess.Popen, deadline: float, stop, lock: threading.Lock, reaped: list[bool]) -> tuple[int, object]:
    """Wait for the child with wait4 (its rusage tells a CPU-limit kill apart); past `deadline` kill its group."""
    while True:
        with lock:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                reaped.append(True)
        if pid:
            break
        if time.monotonic() >= deadline:
            stop("wall_clock")
            with lock:
                pid, status, usage = os.wait4(process.pid, 0)
                reaped.append(True)
            break
        time.sleep(_POLL_SECONDS)
    process.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait again
    return status, usage


def _kill_group(pid: int, leader_alive: bool) -> None:
    """SIGKILL the child's descendants, the child itself while it is not reaped (its pid is still its own), and its group."""
    if leader_alive:
        for victim in [*_descendants(pid), pid]:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(victim, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _descendants(pid: int) -> list[int]:
    """Children of `pid`, recursively, from /proc (Linux); empty elsewhere, where the group kill has to do."""
    found, pending = [], [pid]
    while pending:
        current = pending.pop()
        try:
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue
        for child in map(int, children):
            found.append(child)
            pending.append(child)
    return found


def _classify(status: int, usage, reason: list[str], limits: SandboxLimits, blocked: bool, stderr: str) -> str:
    if reason:
        return "timeout" if reason[0] == "wall_clock" else "output_limit"
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        cpu = usage.ru_utime + usage.ru_stime
        if sig == signal.SIGXCPU or (sig == signal.SIGKILL and cpu >= limits.cpu_seconds - 0.05):
            return "cpu_limit"
        if sig in (signal.SIGABRT, signal.SIGSEGV) and "memory" in stderr.lower():
            return "memory"
        return "killed"
    code = os.WEXITSTATUS(status)
    if code == BLOCKED_EXIT and blocked:
        return "blocked"
    if code == MEMORY_EXIT or (code != 0 and stderr.rstrip().endswith("MemoryError")):
        return "memory"
    return "ok" if code == 0 else "error"


def _remove_tree(base: Path) -> None:
    """Remove the run's folder even where the program took permissions away from its own files."""

    def unlock(function, path, _exc) -> None:
        os.chmod(os.path.dirname(path), stat.S_IRWXU)
        if os.path.isdir(path) and not os.path.islink(path):
            os.chmod(path, stat.S_IRWXU)
        function(path)

    shutil.rmtree(base, onerror=unlock)
