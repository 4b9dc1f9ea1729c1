"""Processes the CLI starts, and the signals that stop it: nothing it started outlives it.

    with interrupt_on(*STOPPING):                        # they raise Interrupted (a KeyboardInterrupt), so `finally`
        ...                                              # blocks and context managers clean up
        with shielded():                                 # but not in here: a signal waits for the block's end
            tracker.record(job, result)

    with signals_caught(*STOPPING) as caught:            # they only append to `caught`: no exception mid-way
        proc = start_group([...])                        # a server in a process group of its own
        try:
            while not caught and proc.poll() is None: ...
        finally:
            stop_group(proc)                             # the server and every process it forked

A server started in its own group (a new session) neither receives the terminal's Ctrl-C nor is stopped by it,
so the CLI must stop it itself, on every way out: a normal return, an exception, SIGINT, SIGTERM and SIGHUP.
A SIGKILL of the CLI cannot be caught: then, on Linux, the kernel sends the group's leader SIGTERM
(PR_SET_PDEATHSIG), and `mlflow ui` stops its workers on SIGTERM.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

STOPPING = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class Interrupted(KeyboardInterrupt):
    """The process received `signum`; raised in the main thread, where Ctrl-C raises KeyboardInterrupt."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def status(self) -> int:
        """The shell's exit status for a process ended by this signal: 128 + its number."""
        return 128 + self.signum


class _Held:
    depth = 0  # how many `shielded` blocks the main thread is in
    pending: int | None = None  # the first signal that arrived inside them


def _raise(signum: int, frame: object) -> None:
    if _Held.depth:
        _Held.pending = _Held.pending or signum
        return
    raise Interrupted(signum)


@contextmanager
def interrupt_on(*signums: int) -> Iterator[None]:
    """Inside, each of `signums` raises Interrupted in the main thread (held while in a `shielded` block); the
    previous handlers come back after.

    A signal the process ignores (SIG_IGN: SIGHUP under `nohup`, SIGINT in a shell's background job) stays
    ignored. Off the main thread, where Python cannot set handlers, this does nothing."""
    with _handling(signums, _raise):
        yield


@contextmanager
def shielded() -> Iterator[None]:
    """Inside, a signal of `interrupt_on` is held, and raised when the block ends: a write to the tracking store is
    never cut in half (a sqlite transaction interrupted inside SQLAlchemy can keep the database locked, for every
    other connection, until the process exits). Off the main thread, or with no `interrupt_on`, it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _Held.depth += 1
    try:
        yield
    finally:
        _Held.depth -= 1
        if not _Held.depth and _Held.pending is not None:
            signum, _Held.pending = _Held.pending, None
            raise Interrupted(signum)


@contextmanager
def signals_caught(*signums: int) -> Iterator[list[int]]:
    """Inside, each of `signums` is appended to the yielded list instead of acting (the caller polls it); the
    previous handlers come back after. Signals the process ignores stay ignored; off the main thread, nothing."""
    caught: list[int] = []
    with _handling(signums, lambda signum, frame: caught.append(signum)):
        yield caught


@contextmanager
def _handling(signums: tuple[int, ...], handler) -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}
    for signum in signums:
        if signal.getsignal(signum) != signal.SIG_IGN:
            previous[signum] = signal.signal(signum, handler)
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old if old is not None else signal.SIG_DFL)


def _sigterm_when_parent_dies():
    """On Linux, a preexec_fn under which the child gets SIGTERM when this process dies, however it dies (SIGKILL,
    the OOM killer): the one way out no handler sees. None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl  # loaded here: the child only calls it
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent died before the call: nobody would signal
            os._exit(1)

    return preexec


def start_group(cmd: list[str], **kwargs) -> subprocess.Popen:
    """Start `cmd` as the leader of a new session (and process group), for `stop_group` to end whole; on Linux the
    leader also gets SIGTERM should this process die without stopping it (SIGKILL)."""
    return subprocess.Popen(cmd, start_new_session=True, preexec_fn=_sigterm_when_parent_dies(), **kwargs)


def group_members(pgid: int) -> list[int]:
    """The live processes of process group `pgid` (zombies left out: they hold no port and no memory).

    Read from /proc; where there is none, any process of the group counts."""
    proc = "/proc"
    if not os.path.isdir(proc):
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return []
        return [pgid]
    members = []
    for entry in os.listdir(proc):
        if not entry.isdigit():
            continue
        try:
            with open(f"{proc}/{entry}/stat") as f:
                stat = f.read()
        except OSError:  # it has just exited
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) ": state, ppid, pgrp, session, ...
        if int(fields[2]) == pgid and fields[0] not in "ZX":
            members.append(int(entry))
    return members


def stop_group(proc: subprocess.Popen, grace: float = 10.0) -> int | None:
    """End `proc` (started by `start_group`) and every process of its group: SIGTERM, then after `grace` seconds
    SIGKILL to what is left. Returns `proc`'s exit status (None if it could not be reaped).

    Safe to call twice, and on a process that has already exited (its workers may still be running)."""
    pgid = proc.pid  # the leader of a new session: its pid is its group's id, valid while any member lives
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + (grace if sig == signal.SIGTERM else 5.0)
        while group_members(pgid) and time.monotonic() < deadline:
            proc.poll()  # reap the leader
            time.sleep(0.1)
        if not group_members(pgid):
            break
    try:
        return proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        return None
