"""Start, find and stop the local servers as plain OS processes, by pid file.

A pid file alone is not proof: pids are reused. A process counts as ours only while it is
alive and its command line names our state folder, so ``stack down`` can never signal a
stranger that happens to hold an old pid.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

# Children we started, kept so they are reaped (no zombies) and not garbage-collected
# while running, which would make Python warn that it lost track of a live process.
_children: dict[int, subprocess.Popen[bytes]] = {}


@atexit.register
def _hand_children_to_init() -> None:
    """Services outlive the command (or test run) that started them: they run in a session
    of their own and init reaps them once this process exits. Without this, every ``Popen``
    of a still-running service warns "subprocess ... is still running" at interpreter exit."""
    for process in _children.values():
        if process.poll() is None:
            process.returncode = 0  # released on purpose; nothing waits for it any more
    _children.clear()


def spawn(
    command: Sequence[str],
    *,
    log_path: Path,
    pid_path: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> int:
    """Start ``command`` detached (own session), output appended to ``log_path``; returns pid."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    pid_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        log.write(f"\n=== started {time.strftime('%Y-%m-%dT%H:%M:%S')}: {command[0]}\n".encode())
        log.flush()
        process = subprocess.Popen(
            list(command),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=None if env is None else dict(env),
            cwd=cwd,
            start_new_session=True,
        )
    _children[process.pid] = process
    pid_path.write_text(f"{process.pid}\n", encoding="utf-8")
    return process.pid


def command_line(pid: int) -> str:
    """The command line of a live process, or '' when it is gone or unreadable."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace")


#: How long a live process may show an empty command line before we judge it. ``Popen``
#: returns when the child's close-on-exec pipe closes, which the kernel does before it
#: lays out the new program's arguments: for that moment ``/proc/<pid>/cmdline`` is empty.
#: CI once read it there and reported a healthy Prometheus as "exited while starting".
EXEC_SETTLE_S = 1.0


def settled_command_line(
    pid: int, *, read: Callable[[int], str] = command_line, settle_s: float = EXEC_SETTLE_S
) -> str:
    """``pid``'s command line; while the process is alive and shows none (a program still
    being exec'd), read again for up to ``settle_s``."""
    deadline = time.monotonic() + settle_s
    while True:
        line = read(pid)
        if line or not is_alive(pid) or time.monotonic() >= deadline:
            return line
        time.sleep(0.01)


def is_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
    except OSError:
        return False
    # The state letter follows the parenthesised command name.
    return stat.rpartition(")")[2].split()[0] != "Z"


def owned_pid(pid_path: Path, marker: str) -> int | None:
    """The pid in ``pid_path`` if that process is alive and its command line names ``marker``."""
    try:
        pid = int(pid_path.read_text(encoding="utf-8").split()[0])
    except (OSError, ValueError, IndexError):
        return None
    if is_alive(pid) and marker in settled_command_line(pid):
        return pid
    return None


def how_it_ended(pid_path: Path, marker: str) -> str:
    """Why ``owned_pid`` found no process: its exit status when it was our child, else what
    is known. For the "exited while starting" error, so a silent death is not a mystery."""
    try:
        pid = int(pid_path.read_text(encoding="utf-8").split()[0])
    except (OSError, ValueError, IndexError):
        return f"no readable pid in {pid_path}"
    child = _children.get(pid)
    code = child.poll() if child is not None else None
    if code is not None:
        if code < 0:
            return f"pid {pid} killed by {signal.Signals(-code).name}"
        return f"pid {pid} exit code {code}"
    line = settled_command_line(pid)
    if is_alive(pid) and marker not in line:
        return f"pid {pid} now runs another program: {line[:120]!r}"
    return f"pid {pid} is gone (exit status unknown: not started by this process)"


def terminate(pid: int, *, timeout_s: float = 30.0) -> None:
    """SIGTERM the process group of ``pid``, then SIGKILL it if it outlives ``timeout_s``."""
    _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        _reap(pid)
        if not is_alive(pid):
            _reap(pid)
            return
        time.sleep(0.2)
    _signal_group(pid, signal.SIGKILL)
    while is_alive(pid) and time.monotonic() < deadline + 10:
        _reap(pid)
        time.sleep(0.1)
    _reap(pid)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(os.getpgid(pid), sig)
    except ProcessLookupError:
        return
    except PermissionError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def _reap(pid: int) -> None:
    """Collect the exit status when the process is our own child, so it does not linger."""
    child = _children.get(pid)
    if child is not None:
        if child.poll() is not None:
            del _children[pid]
        return
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def port_in_use(host: str, port: int) -> bool:
    """True when something accepts TCP connections on ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((host, port)) == 0


def tail(path: Path, lines: int = 20) -> str:
    """The last ``lines`` lines of a text file ('' when it does not exist)."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 64 * 1024))
            data = handle.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(data.splitlines()[-lines:])
