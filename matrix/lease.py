"""A study's lease: one driver at a time runs a study, wherever the drivers run.

    lease = take_lease(uri, "demo", artifact_root, force=False, echo=print)  # LeaseHeld if another driver has it
    try:
        ...run the study...          # if another driver takes the lease (--force), the main thread gets a
    finally:                         # KeyboardInterrupt and `lease.lost` says who took it
        lease.release()

    check_free(uri, "demo")          # `tmx submit`: LeaseHeld if a live driver holds it; creates nothing

The lease lives in the tracking store, so it works alike on a sqlite file and on an MLflow server. Each driver
creates a *lease run* in the study's experiment (tag kind=lease; its host, pid and start in tags `host`, `pid`,
`since`), RUNNING while the driver lives, and renews its `heartbeat` tag (epoch seconds) every HEARTBEAT_S seconds
from a daemon thread. A lease run is *stale* when its heartbeat is older than TIMEOUT_S (the driver was killed, or
lost the store), or at once when its driver ran on this machine and its process is gone; whoever finds a stale lease
run ends it (KILLED, tag `ended_by`) and deletes it. Job listings never show lease runs (`Tracker.runs`,
`analysis.load`), and a driver deletes its own when it ends: MLflow keeps deleted runs, the UI hides them.

MLflow has no compare-and-set, and a run's start time is the client's clock, so "the earliest lease run wins" races
(a run created first can become visible last). Who holds the lease is settled by Lamport's bakery algorithm over the
lease runs instead, which needs only that a write is seen by every read that starts after it: a driver creates its
run (still without a ticket), lists the live lease runs, sets its `ticket` tag to one more than the largest it saw,
and lists them again, waiting while one has no ticket yet. It holds the lease when no live run has a smaller
(ticket, run id); otherwise it deletes its run and raises LeaseHeld naming the one ahead of it. Two drivers that both
pass cannot exist: whichever finished its check first was visible, with its ticket, to the other's ticket choice.

A holder that cannot renew its heartbeat for TIMEOUT_S - 2 * HEARTBEAT_S seconds, or finds its run ended by another
driver (a stale takeover, or `--force`), gives the lease up: `lost` says why and the main thread is interrupted, so
the driver stops at once. `--force` ends every other lease run, then waits (at most TIMEOUT_S) until their drivers
say they stopped (tag `stopped`), so no job is run by two drivers. Timing relies on the hosts' clocks agreeing to
within a few seconds (NTP). TMX_LEASE_TIMEOUT and TMX_LEASE_HEARTBEAT override the two periods (tests shorten them).
"""

from __future__ import annotations

import _thread
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

TIMEOUT_S = 30.0  # a lease run whose heartbeat is older than this is stale
HEARTBEAT_S = 5.0  # how often its driver renews it
ENV_TIMEOUT, ENV_HEARTBEAT = "TMX_LEASE_TIMEOUT", "TMX_LEASE_HEARTBEAT"
KIND = "lease"  # the `kind` tag of lease runs
RUNNING = "tags.kind = 'lease' and attributes.status = 'RUNNING'"


class LeaseError(Exception):
    """One line saying why the driver cannot run the study (exit status 2)."""


class LeaseHeld(LeaseError):
    """Another driver holds the study's lease; `holder` is it."""

    def __init__(self, message: str, holder: Holder) -> None:
        super().__init__(message)
        self.holder = holder


def periods() -> tuple[float, float]:
    """(timeout, heartbeat) in seconds, from TMX_LEASE_TIMEOUT and TMX_LEASE_HEARTBEAT or the defaults."""
    values = []
    for name, default in ((ENV_TIMEOUT, TIMEOUT_S), (ENV_HEARTBEAT, HEARTBEAT_S)):
        try:
            values.append(float(os.environ.get(name) or default))
        except ValueError:
            raise LeaseError(f"{name}: expected seconds, got {os.environ[name]!r}") from None
    timeout, beat = values
    if not 0 < 4 * beat <= timeout:  # a holder gives its lease up after timeout - 2 * beat unrenewed: >= 2 beats
        raise LeaseError(f"{ENV_HEARTBEAT}={beat:g} must be positive and at most a quarter of {ENV_TIMEOUT}={timeout:g}")
    return timeout, beat


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def _start_time(pid: int) -> tuple[str, str] | None:
    """(state, start time in clock ticks after boot) of process `pid` (/proc/PID/stat), None if there is none."""
    stat = _read(f"/proc/{pid}/stat")
    if stat is None:
        return None
    fields = stat.rpartition(")")[2].split()  # after the command name, which may hold spaces and parentheses
    return fields[0], fields[19]


def _machine() -> str | None:
    """This boot of this machine and its process id namespace: processes with the same value see the same pids."""
    boot, ns = _read("/proc/sys/kernel/random/boot_id"), None
    try:
        ns = os.readlink("/proc/self/ns/pid")
    except OSError:
        pass
    return f"{boot}/{ns}" if boot and ns else None


def _process_tag() -> str | None:
    """`process` tag: machine/pid namespace/start time of this process (tells a pid reused later apart)."""
    machine, me = _machine(), _start_time(os.getpid())
    return f"{machine}/{me[1]}" if machine and me else None


def _utc(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


@dataclass(frozen=True)
class Holder:
    """A lease run as read from the store."""

    run_id: str
    host: str
    pid: int
    since: str
    heartbeat: float  # epoch seconds of its last renewal
    ticket: int | None  # None while its driver is still choosing one
    process: str | None
    status: str = "RUNNING"
    stopped: bool = False  # its driver said it stopped after losing the lease

    @classmethod
    def of(cls, run) -> Holder:
        tags = run.data.tags

        def number(key: str, cast, default):
            try:
                return cast(tags[key])
            except (KeyError, ValueError):
                return default

        return cls(run.info.run_id, tags.get("host", "?"), number("pid", int, 0), tags.get("since", "?"),
                   number("heartbeat", float, (run.info.start_time or 0) / 1000), number("ticket", int, None),
                   tags.get("process"), run.info.status if run.info.lifecycle_stage == "active" else "DELETED",
                   "stopped" in tags)  # fmt: skip

    def gone(self) -> bool:
        """True when its driver ran on this machine (same boot, same pid namespace) and its process has ended."""
        machine = _machine()
        if not self.process or machine is None or not self.process.startswith(machine + "/"):
            return False  # another machine or container: only its heartbeat tells
        state = _start_time(self.pid)
        return state is None or state[0] in "ZX" or state[1] != self.process.rpartition("/")[2]

    def stale(self, timeout: float, now: float) -> str | None:
        """Why this lease run is stale (its process is gone, its heartbeat stopped), or None while it lives."""
        if self.gone():
            return "its process is gone"
        if now - self.heartbeat > timeout:
            return f"no heartbeat for {now - self.heartbeat:.0f} s"
        return None

    def who(self) -> str:
        return f"host {self.host}, pid {self.pid}"

    def describe(self, now: float) -> str:
        return f"{self.who()}, since {self.since} (last heartbeat {max(0.0, now - self.heartbeat):.0f} s ago)"


def _holders(client, experiment_id: str) -> list[Holder]:
    return [Holder.of(r) for r in client.search_runs([experiment_id], RUNNING, max_results=1000)]


def _held_message(study: str, uri: str, holder: Holder, timeout: float) -> str:
    return (f"study {study!r} is already being run by {holder.describe(time.time())}, lease in {uri}; wait for it "
            f"to end or stop it, or pass --force to take the study over (a killed driver's lease lapses "
            f"{timeout:g} s after its last heartbeat)")  # fmt: skip


def _end(client, run_id: str, status: str, why: str) -> None:
    """End and delete a lease run; another driver may have done so already."""
    try:
        client.set_tag(run_id, "ended_by", why)
        client.set_terminated(run_id, status)
        client.delete_run(run_id)
    except Exception:  # ended and deleted meanwhile by someone else: nothing left to do
        pass


def _interrupt_main() -> None:
    """Stop the driver as Ctrl-C does: its SIGINT handler runs in the main thread (KeyboardInterrupt; under
    `matrix.processes.interrupt_on` held until a store write ends), or its SIGTERM handler where SIGINT is ignored
    (a background job); the CLI then says why."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        if callable(signal.getsignal(signum)):
            _thread.interrupt_main(signum)
            return


class Lease:
    """This driver's lease run on a study; `take_lease` makes one and acquires it."""

    def __init__(self, client, experiment_id: str, study: str, uri: str, timeout: float, beat: float) -> None:
        self.client, self.experiment_id, self.study, self.uri = client, experiment_id, study, uri
        self.timeout, self.beat = timeout, beat
        self.fence = timeout - 2 * beat  # give the lease up when unrenewed this long: before others take it
        self.run_id: str | None = None
        self.lost: str | None = None  # why this driver lost the lease, once it has
        self._armed = False  # interrupt the main thread when the lease is lost
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._renewed = time.time()
        self._threads: list[threading.Thread] = []
        self._lapsed: list[tuple[Holder, str]] = []  # stale lease runs this driver ended, and why
        self.me = f"host {socket.gethostname()}, pid {os.getpid()}"

    def acquire(self, force: bool, echo: Callable[[str], None]) -> None:
        """Hold the lease, or raise LeaseHeld (this driver's lease run then deleted)."""
        forced = self._force(echo) if force else []
        now = time.time()
        host, pid = socket.gethostname(), os.getpid()
        tags = {"kind": KIND, "study": self.study, "host": host, "pid": str(pid), "since": _utc(now),
                "heartbeat": f"{now:.3f}", "mlflow.runName": f"lease {host}:{pid}",
                "mlflow.note.content": f"The driver running study {self.study} holds its lease while this run is "
                                       "RUNNING (matrix/lease.py); it is deleted when the driver ends."}  # fmt: skip
        if (process := _process_tag()) is not None:
            tags["process"] = process
        self.run_id = self.client.create_run(self.experiment_id, start_time=int(now * 1000), tags=tags).info.run_id
        self._start()
        try:
            ticket = 1 + max((h.ticket or 0 for h in self._others()), default=0)
            self.client.set_tag(self.run_id, "ticket", str(ticket))
            mine, settling = (ticket, self.run_id), time.monotonic() + self.timeout
            while True:
                others = self._others()
                ahead = sorted((h for h in others if h.ticket is not None and (h.ticket, h.run_id) < mine),
                               key=lambda h: (h.ticket, h.run_id))  # fmt: skip
                if ahead:
                    raise LeaseHeld(_held_message(self.study, self.uri, ahead[0], self.timeout), ahead[0])
                choosing = [h for h in others if h.ticket is None]
                if not choosing:
                    break
                if time.monotonic() > settling:  # alive (it renews its heartbeat) but stuck before its ticket
                    raise LeaseHeld(_held_message(self.study, self.uri, choosing[0], self.timeout), choosing[0])
                time.sleep(0.1)  # a driver is between creating its run and taking its ticket: a moment
            self._await_stopped(forced, echo)
            with self._lock:
                if self.lost is not None:  # taken from us while we settled it
                    raise LeaseError(self.lost)
                self._armed = True
        except BaseException:
            self._stop.set()
            _end(self.client, self.run_id, "KILLED", "lost the lease race")
            raise
        for holder, why in self._lapsed:
            echo(f"took over the lease of study {self.study!r} from {holder.who()}, since {holder.since}: {why}")

    def _others(self) -> list[Holder]:
        """The other live lease runs; stale ones are ended on the way."""
        live, now = [], time.time()
        for holder in _holders(self.client, self.experiment_id):
            if holder.run_id == self.run_id:
                continue
            why = holder.stale(self.timeout, now)
            if why is None:
                live.append(holder)
                continue
            _end(self.client, holder.run_id, "KILLED", f"{self.me} ({why})")
            self._lapsed.append((holder, why))  # said once this driver holds the lease
        return live

    def _force(self, echo: Callable[[str], None]) -> list[Holder]:
        """--force: end every other lease run; returns the live ones, whose drivers must stop."""
        forced = []
        for holder in _holders(self.client, self.experiment_id):
            if holder.stale(self.timeout, time.time()):
                continue  # left to _others, which ends it as stale
            try:
                self.client.set_tag(holder.run_id, "ended_by", f"{self.me} (with --force)")
                self.client.set_terminated(holder.run_id, "KILLED")
            except Exception:
                continue  # ended meanwhile
            echo(f"--force: took the lease of study {self.study!r} from {holder.describe(time.time())}; waiting up "
                 f"to {self.timeout:g} s for that driver to stop")  # fmt: skip
            forced.append(holder)
        return forced

    def _await_stopped(self, forced: list[Holder], echo: Callable[[str], None]) -> None:
        """Wait until the drivers `forced` out have stopped (tag `stopped`, run deleted, or process gone), at most
        the lease timeout; then delete their runs."""
        deadline = time.monotonic() + self.timeout
        for holder in forced:
            while time.monotonic() < deadline:
                try:
                    now = Holder.of(self.client.get_run(holder.run_id))
                except Exception:
                    break  # no such run any more
                if now.stopped or now.status == "DELETED" or now.gone():
                    break
                time.sleep(0.2)
            else:
                echo(f"--force: the driver at {holder.who()} did not say it stopped within {self.timeout:g} s; "
                     "going on")  # fmt: skip
            _end(self.client, holder.run_id, "KILLED", f"{self.me} (with --force)")

    def _start(self) -> None:
        for target in (self._renew, self._watch):
            thread = threading.Thread(target=target, name=f"tmx-lease-{target.__name__.strip('_')}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def _renew(self) -> None:
        """Renew the heartbeat every `beat` seconds; notice a lease run ended by another driver."""
        while not self._stop.wait(self.beat):
            try:
                run = self.client.get_run(self.run_id)
                if run.info.status != "RUNNING" or run.info.lifecycle_stage != "active":
                    ended_by = run.data.tags.get("ended_by", "another driver")
                    self._lose(f"study {self.study!r} was taken over by {ended_by}; this driver stopped (the jobs it "
                               f"finished are recorded in {self.uri})")  # fmt: skip
                    return
                self.client.set_tag(self.run_id, "heartbeat", f"{time.time():.3f}")
                self._renewed = time.time()
            except Exception:  # the store did not answer: the watch gives the lease up if this lasts
                continue

    def _watch(self) -> None:
        """Give the lease up when it has gone unrenewed for `fence` seconds (before another driver may take it)."""
        while not self._stop.wait(min(1.0, self.beat)):
            if time.time() - self._renewed > self.fence:
                unrenewed = time.time() - self._renewed
                self._lose(f"could not renew the lease of study {self.study!r} in {self.uri} for {unrenewed:.0f} s; "
                           "this driver stopped so that another may take over")  # fmt: skip
                return

    def _lose(self, why: str) -> None:
        with self._lock:
            if self.lost is not None or self._stop.is_set():
                return
            self.lost = why
            if self._armed:
                _interrupt_main()


    def release(self) -> None:
        """End this driver's lease run (FINISHED, deleted); after a lost lease, say that this driver stopped."""
        try:
            with self._lock:
                self._armed = False
                self._stop.set()
            for thread in self._threads:
                thread.join()
            if self.run_id is None:
                return
            if self.lost is not None:
                self.client.set_tag(self.run_id, "stopped", f"{time.time():.3f}")  # what --force waits for
                self.client.delete_run(self.run_id)
            else:
                self.client.set_terminated(self.run_id, "FINISHED")
                self.client.delete_run(self.run_id)
        except KeyboardInterrupt:  # a lost-lease interrupt that came as the driver ended
            pass
        except Exception:  # the store is gone: the lease lapses with its heartbeat
            pass


def take_lease(uri: str, study: str, artifact_root: Path | None = None, force: bool = False,
               echo: Callable[[str], None] = lambda s: None) -> Lease:  # fmt: skip
    """Acquire `study`'s lease in the store at `uri`, creating the store and the study's experiment if new.

    Raises LeaseHeld (a live driver holds it) or LeaseError (bad TMX_LEASE_* values). `echo` receives a line when a
    stale lease is taken over or `force` takes a live one. Release the lease with `Lease.release()`."""
    from matrix.tracking import open_client, study_experiment

    timeout, beat = periods()
    client = open_client(uri)
    exp = study_experiment(client, study, artifact_root)
    lease = Lease(client, exp.experiment_id, study, uri, timeout, beat)
    lease.acquire(force, echo)
    return lease


def check_free(uri: str, study: str) -> None:
    """Raise LeaseHeld when a live driver holds `study`'s lease at `uri`; creates and ends nothing.

    A sqlite file that does not exist has no lease; a server is asked without retries (`tmx submit` runs this on
    a machine that may not reach it: then the error propagates and the job's own driver checks)."""
    from matrix.tracking import open_client

    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
        return
    timeout, _ = periods()
    with _quick_http():
        client = open_client(uri)
        exp = client.get_experiment_by_name(study)
        if exp is None:
            return
        now = time.time()
        live = sorted((h for h in _holders(client, exp.experiment_id) if h.stale(timeout, now) is None),
                      key=lambda h: (h.ticket is None, h.ticket or 0, h.run_id))  # fmt: skip
    if live:
        raise LeaseHeld(_held_message(study, uri, live[0], timeout), live[0])


@contextmanager
def _quick_http():
    """MLflow's HTTP client without retries and with a short timeout (its settings are read per request)."""
    quick = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
    saved = {k: os.environ.get(k) for k in quick}
    os.environ.update(quick)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
