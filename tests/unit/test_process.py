"""Process ownership: `stack down` signals only processes whose command line is ours."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from stack.process import (
    how_it_ended,
    is_alive,
    owned_pid,
    port_in_use,
    settled_command_line,
    spawn,
    tail,
    terminate,
)


def test_spawned_process_is_owned_then_terminated(tmp_path: Path) -> None:
    marker = str(tmp_path / "marker-dir")
    pid = spawn(
        [sys.executable, "-c", "import time, sys; print('up', flush=True); time.sleep(60)", marker],
        log_path=tmp_path / "logs" / "svc.log",
        pid_path=tmp_path / "run" / "svc.pid",
    )
    deadline = time.monotonic() + 10
    while "up" not in tail(tmp_path / "logs" / "svc.log") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert owned_pid(tmp_path / "run" / "svc.pid", marker) == pid
    terminate(pid, timeout_s=5)
    assert not is_alive(pid)
    assert owned_pid(tmp_path / "run" / "svc.pid", marker) is None


def test_a_live_stranger_behind_a_stale_pid_file_is_not_ours(tmp_path: Path) -> None:
    pid_file = tmp_path / "svc.pid"
    pid_file.write_text(f"{os.getpid()}\n")  # this pytest process: alive, but not ours
    assert owned_pid(pid_file, str(tmp_path / "state")) is None


def test_a_command_line_still_being_exec_d_is_read_again_not_judged() -> None:
    """A just-spawned service shows an empty command line until the kernel has laid out
    its arguments: ownership must wait for them (CI once called a healthy Prometheus
    "exited while starting"), and give up when they never come."""
    reads = iter(["", "", "/usr/bin/prometheus --storage.tsdb.path=/state/x"])
    alive = os.getpid()  # any live process: the reads are the fake's
    assert settled_command_line(alive, read=lambda _: next(reads)) == (
        "/usr/bin/prometheus --storage.tsdb.path=/state/x"
    )
    started = time.monotonic()
    assert settled_command_line(alive, read=lambda _: "", settle_s=0.1) == ""
    assert 0.1 <= time.monotonic() - started < 2


def test_garbage_pid_files_are_ignored(tmp_path: Path) -> None:
    pid_file = tmp_path / "svc.pid"
    pid_file.write_text("not a pid\n")
    assert owned_pid(pid_file, "x") is None
    assert owned_pid(tmp_path / "missing.pid", "x") is None


def test_port_probe_sees_a_listener() -> None:
    import socket

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert port_in_use("127.0.0.1", port)
    assert not port_in_use("127.0.0.1", port)


@pytest.mark.parametrize(
    ("script", "ending"),
    [("exit 3", "exit code 3"), ("kill -KILL $$", "killed by SIGKILL")],
)
def test_a_service_that_died_while_starting_says_how(
    tmp_path: Path, script: str, ending: str
) -> None:
    pid_path = tmp_path / "run" / "svc.pid"
    pid = spawn(
        ["sh", "-c", script, str(tmp_path)], log_path=tmp_path / "svc.log", pid_path=pid_path
    )
    deadline = time.monotonic() + 10
    while is_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert owned_pid(pid_path, str(tmp_path)) is None
    assert how_it_ended(pid_path, str(tmp_path)) == f"pid {pid} {ending}"
