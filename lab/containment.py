"""Containment: no process that wslab starts outlives it, even after ``kill -9``.

Call :func:`enter` first thing in ``main()``, before any thread or event loop
exists. It returns in a new process that runs the command; the process the user
started never returns from it: it waits, passes SIGINT, SIGTERM, SIGHUP and
SIGQUIT on, prints nothing, and exits with the command's status (its exit code,
or death by the same signal). ``ps`` shows three wslab processes::

    wslab (the user's: waits)  ->  supervisor  ->  the command (lab, proxies, ...)

Modes, best first (:func:`mode` tells the command which one is in force):

``pid-namespace``
    The supervisor is PID 1 of a new PID namespace; the command (PID 2) and
    everything it starts live in that namespace. When the supervisor dies,
    whatever the cause, the kernel kills every process in the namespace, nginx
    and Apache workers and Chromium's detached crash handler included, and the
    user's process sees it end only once they are all gone. The supervisor
    dies with the user's process (parent-death signal, then a check that the
    parent did not die before it was armed). Needs CAP_SYS_ADMIN (root).
``user+pid-namespace``
    The same without root, inside a user namespace whose ids are the same as
    outside (only the caller's own uid and gid are mapped unless root may map
    them all), so files, permissions and ``id`` look the same. Needs
    unprivileged user namespaces (off in some kernels, and blocked by Docker's
    default seccomp profile).
``subreaper``
    Best effort where no namespace can be made. A fourth process, the guardian,
    sits between the user's process and the supervisor: a child subreaper, so
    every orphan below it is re-parented to it rather than to init, in a process
    group of its own, so that a ``kill -9`` of the user's process group spares
    it. It kills the whole tree when the user's process dies or the command
    ends. It cannot help if the guardian itself is killed with SIGKILL (by its
    pid, or by the OOM killer): then the command gets SIGTERM (its lab tears
    down as on Ctrl-C) if the supervisor is gone too, its direct children die
    with it, and lab/processes.py's group keeper kills their workers. The
    guardian ignores SIGINT and SIGTERM sent to it alone.
``off``
    Nothing: ``WSLAB_CONTAINMENT=off`` (for debugging with one process), an
    in-process caller of ``main(argv)``, or the ``probe-server`` command.

``WSLAB_CONTAINMENT`` may also name a mode to start the search from (e.g.
``subreaper`` to try the fallback); a mode that cannot be had falls back to the
next one, and an unknown value means the best available. Containment never
makes a command fail: the worst case is ``subreaper``, or ``off`` if not even a
process can be forked.

Why a supervisor rather than the command itself as PID 1: a PID 1 ignores every
signal it has no handler for (a SIGTERM or SIGHUP before or after asyncio's
handlers would be lost), and it must reap every orphan, which would race with
asyncio's child watchers for the exit status of the lab's own children. As PID
2 the command keeps ordinary signal and child semantics; the supervisor is a
few dozen lines of select() and waitpid().

Signals are delivered once. A Ctrl-C or a kill of the process group reaches the
command directly (it stays in the terminal's foreground process group, so
terminal output, progress bars and ``wslab run | head`` work as before) and also
reaches the user's process, which passes it on; the supervisor, a member of the
same group, keeps those signals blocked and drops a passed-on one that it has
pending itself.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import NoReturn

PID_NAMESPACE = "pid-namespace"
USER_PID_NAMESPACE = "user+pid-namespace"
SUBREAPER = "subreaper"
OFF = "off"
MODES = (PID_NAMESPACE, USER_PID_NAMESPACE, SUBREAPER, OFF)

UNCONTAINED_COMMANDS = frozenset({"probe-server", "down"})
"""Commands left alone. ``probe-server`` starts no process, and is what a
platform runs as its container's main process: the platform's SIGTERM and
health checks should meet the server itself, not a waiter in front of it.
``down`` starts no process either, and may have to signal a warm lab by its
pid, which a process in a PID namespace of its own cannot name."""

_CLONE_NEWUSER = 0x10000000
_CLONE_NEWPID = 0x20000000
_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36

# Signals passed from the user's process to the command. The supervisor keeps
# them blocked: one that reaches it directly (Ctrl-C at the terminal, kill of the
# process group) reached the command directly too, so it must not be passed on.
_RELAYED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
# A signal sent to the supervisor alone (someone picked its pid out of ps: it
# looks like wslab) is passed on after this long without the matching relay.
_ALONE_AFTER = 0.5

_libc = ctypes.CDLL(None, use_errno=True)
_mode = OFF
_outermost: int | None = None


def mode() -> str:
    """The containment in force for this command: one of :data:`MODES`."""
    return _mode


def outermost_pid() -> int:
    """The pid, as the namespace wslab was started in numbers it, of the process whose end ends
    this command: the user's process when contained, this one when not. A signal sent to it
    reaches the command as one from the terminal would."""
    return _outermost if _outermost is not None else os.getpid()


def enter(argv: Sequence[str] | None = None) -> None:
    """Run the rest of this command contained; see the module docstring.

    ``argv`` is ``main()``'s own argument: ``None`` for a command-line run
    (``sys.argv`` is looked at), a list for an in-process caller, which is left
    alone because its process must not be turned into a waiter. Returns in the
    process that runs the command; in the user's process it exits instead.
    Call it before any thread is started: it forks.
    """
    global _mode
    if argv is not None or set(sys.argv[1:2]) & UNCONTAINED_COMMANDS:
        return
    wanted = os.environ.get("WSLAB_CONTAINMENT", "").strip().lower() or PID_NAMESPACE
    if wanted not in MODES:
        wanted = PID_NAMESPACE
    if wanted == OFF or threading.active_count() > 1:
        return
    chosen = _isolate(MODES[MODES.index(wanted) : MODES.index(OFF)])
    _mode = chosen
    _split(chosen)


def _isolate(candidates: Iterable[str]) -> str:
    """Make this process's future children start in a new PID namespace if it can."""
    for candidate in candidates:
        if candidate == PID_NAMESPACE and _unshare(_CLONE_NEWPID):
            return candidate
        if candidate == USER_PID_NAMESPACE and _user_namespaces_work():
            outcome = _unshare_user_and_pid()
            if outcome == "unmapped":
                # Too late to go back; the throwaway child managed the same steps,
                # so this should not happen.
                print("wslab: containment failed half-way; try WSLAB_CONTAINMENT=off", file=sys.stderr)
                os._exit(70)
            if outcome == "mapped":
                return candidate
        if candidate == SUBREAPER:
            return candidate
    return SUBREAPER


def _unshare(flags: int) -> bool:
    return _libc.unshare(flags) == 0


def _user_namespaces_work() -> bool:
    """Try the user+pid namespace steps in a throwaway child first.

    A failure half-way would strand this process in a user namespace without an
    id map (every file it created would fail), and unshare cannot be undone.
    """
    try:
        pid = os.fork()
    except OSError:
        return False
    if pid == 0:
        try:
            if _unshare_user_and_pid() != "mapped":
                os._exit(1)
            init = os.fork()
            if init == 0:
                os._exit(0)
            os._exit(0 if os.waitpid(init, 0)[1] == 0 else 1)
        except BaseException:
            os._exit(1)
    return os.waitpid(pid, 0)[1] == 0


def _unshare_user_and_pid() -> str:
    """Move into a new user namespace (children: a new PID namespace) with the same ids.

    Returns "mapped", "refused" (nothing changed) or "unmapped" (in the new
    user namespace without an id map: unusable, and there is no way back).

    The ids are mapped by a helper child left in the parent namespace: from
    there, root with CAP_SETUID may map every id to itself, so that nginx or
    Apache started as root can still switch to nobody or www-data. Anyone else
    may map only their own uid and gid, which is what they need.
    """
    uid, gid = os.getuid(), os.getgid()
    go_r, go_w = os.pipe()
    try:
        helper = os.fork()
    except OSError:
        os.close(go_r)
        os.close(go_w)
        return "refused"
    if helper == 0:
        os.close(go_w)
        try:
            if os.read(go_r, 1) != b"1":
                os._exit(1)
            _map_ids(Path(f"/proc/{os.getppid()}"), uid, gid)
            os._exit(0)
        except BaseException:
            os._exit(1)
    os.close(go_r)
    unshared = _unshare(_CLONE_NEWUSER | _CLONE_NEWPID)
    os.write(go_w, b"1" if unshared else b"0")
    os.close(go_w)
    mapped = os.waitpid(helper, 0)[1] == 0
    if not unshared:
        return "refused"
    return "mapped" if mapped else "unmapped"


def _map_ids(process: Path, uid: int, gid: int) -> None:
    """Write ``process``'s uid and gid maps: every id to itself if allowed, else the caller's own."""
    everything = "0 0 4294967295"
    try:
        (process / "uid_map").write_text(everything)
    except OSError:
        (process / "uid_map").write_text(f"{uid} {uid} 1")
    try:
        (process / "gid_map").write_text(everything)
    except OSError:
        # setgroups must be denied before an unprivileged process may write gid_map.
        (process / "setgroups").write_text("deny")
        (process / "gid_map").write_text(f"{gid} {gid} 1")


def _prctl(option: int, value: int) -> bool:
    return _libc.prctl(option, value, 0, 0, 0) == 0


def _split(chosen: str) -> None:
    """Fork the processes that contain the command; return in the command, wait in this one."""
    # Blocked from here on in the user's process, which takes them with
    # sigwaitinfo, and in the supervisor; the command gets the original mask back.
    original_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {*_RELAYED, signal.SIGCHLD})
    user_group = os.getpgrp()
    user_process = os.getpid()
    relay_r, relay_w = os.pipe()
    report_r, report_w = os.pipe()
    try:
        child = os.fork()
    except OSError:
        # Nothing can be forked: run uncontained rather than not at all. (In a PID
        # namespace already unshared, this fork would have been its init.)
        for fd in (relay_r, relay_w, report_r, report_w):
            os.close(fd)
        signal.pthread_sigmask(signal.SIG_SETMASK, original_mask)
        global _mode
        _mode = OFF
        return
    if child == 0:
        global _outermost
        _outermost = user_process
        os.close(relay_w)
        os.close(report_r)
        guardian = None
        if chosen == SUBREAPER:
            guardian = _guard(relay_r, report_w)
            # Back in the user's process group, to see the signals the command sees.
            with contextlib.suppress(OSError):
                os.setpgid(0, user_group)
        _Supervisor(relay_r, report_w, original_mask, guardian).start()
        return  # in the command
    os.close(relay_r)
    os.close(report_w)
    _wait(child, relay_w, report_r)


def _wait(child: int, relay_w: int, report_r: int) -> NoReturn:
    """The user's process: pass signals on, then exit as the command did."""
    _detach_stdio()
    watched = {*_RELAYED, signal.SIGCHLD}
    while True:
        info = signal.sigwaitinfo(watched)
        if info.si_signo != signal.SIGCHLD:
            with contextlib.suppress(OSError):
                os.write(relay_w, bytes([info.si_signo]))
            continue
        pid, status = os.waitpid(child, os.WNOHANG)
        if pid == child:
            break
    try:
        # Whoever held the write end has exited by now; never wait for it regardless.
        os.set_blocking(report_r, False)
        report = os.read(report_r, 64).split()
    except OSError:
        report = []
    if len(report) == 2 and report[0] == b"exit":
        os._exit(int(report[1]))
    if len(report) == 2 and report[0] == b"signal":
        _die_by(int(report[1]))
    # Killed before the command ended (someone picked its pid out of ps).
    if os.WIFSIGNALED(status):
        _die_by(os.WTERMSIG(status))
    os._exit(_exit_code(status))


def _exit_code(status: int) -> int:
    """A wait status as a shell's $? shows it."""
    return 128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


def _die_by(signum: int) -> NoReturn:
    """Die of ``signum`` as the command did, so that a shell sees the same thing."""
    if signum not in (signal.SIGKILL, signal.SIGSTOP):
        signal.signal(signum, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signum})
    os.kill(os.getpid(), signum)
    os._exit(128 + signum)


def _detach_stdio() -> None:
    """Let go of the terminal and pipes: only the command reads and writes them."""
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        with contextlib.suppress(OSError):
            os.dup2(null, fd)
    os.close(null)


def _watch_children() -> tuple[int, int]:
    """A pipe that becomes readable whenever a child ends (SIGCHLD unblocked by the caller)."""
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.set_wakeup_fd(wake_w)
    return wake_r, wake_w


def _unwatch_children(*fds: int) -> None:
    """Undo :func:`_watch_children` in a freshly forked child."""
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    for fd in fds:
        os.close(fd)


def _drain(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.read(fd, 512)


def _guard(relay_r: int, report_w: int) -> int:
    """Subreaper mode: become the guardian; return its pid in a new child, the supervisor.

    The guardian is a child subreaper, so every orphan below it (nginx workers
    whose master died, Chromium's crash handler) is re-parented to it rather than
    to init; when the user's process dies or the supervisor ends, it kills its
    whole tree. It leaves the user's process group so that a ``kill -9`` of that
    group (what CI runners and ``timeout -s KILL`` do) spares it.
    """
    _prctl(_PR_SET_CHILD_SUBREAPER, 1)
    with contextlib.suppress(OSError):
        os.setpgid(0, 0)
    if _hung_up(relay_r):
        os._exit(1)
    wake_r, wake_w = _watch_children()
    me = os.getpid()
    try:
        supervisor = os.fork()
    except OSError as exc:
        print(f"wslab: cannot start: {exc}", file=sys.stderr)
        os._exit(1)
    if supervisor == 0:
        _unwatch_children(wake_r, wake_w)
        return me
    os.close(report_w)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
    _detach_stdio()
    poller = select.poll()
    poller.register(relay_r, 0)  # hang-up only: the supervisor reads the data
    poller.register(wake_r, select.POLLIN)
    while True:
        events = dict(poller.poll())
        _drain(wake_r)
        for pid, status in _reap():
            if pid == supervisor:
                _kill_tree(me)
                os._exit(_exit_code(status))
        if events.get(relay_r, 0) & (select.POLLHUP | select.POLLERR):
            # The user's process is gone (kill -9).
            _kill_tree(me)
            os._exit(128 + signal.SIGKILL)


def _reap() -> list[tuple[int, int]]:
    """Reap every child that has ended: (pid, wait status) of each."""
    ended = []
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return ended
        if pid == 0:
            return ended
        ended.append((pid, status))


class _Supervisor:
    """Starts the command, passes signals on to it, reaps orphans, reports how it ended.

    In a PID namespace it is the namespace's init: its exit kills everything left.
    In subreaper mode its parent is ``guardian``.
    """

    def __init__(
        self, relay_r: int, report_w: int, original_mask: set[signal.Signals], guardian: int | None
    ) -> None:
        self.guardian = guardian
        self.namespaced = guardian is None
        self.relay_r = relay_r
        self.report_w = report_w
        self.original_mask = original_mask
        self.command = 0
        self.alone_since: dict[int, float] = {}

    def start(self) -> None:
        """Fork the command and return in it; supervise in this process until it ends."""
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        # The parent may have died before the parent-death signal was armed. The
        # user's process alone holds the relay pipe's write end, so a hang-up tells;
        # across a PID namespace getppid() says 0 and cannot.
        if _hung_up(self.relay_r) or (self.guardian is not None and os.getppid() != self.guardian):
            os._exit(1)
        wake_r, wake_w = _watch_children()
        me = os.getpid()
        try:
            self.command = os.fork()
        except OSError as exc:
            print(f"wslab: cannot start: {exc}", file=sys.stderr)
            self._finish(b"exit 1", 1)
        if self.command == 0:
            _unwatch_children(self.relay_r, self.report_w, wake_r, wake_w)
            # In a namespace the command dies with the supervisor anyway. In the
            # fallback, SIGTERM lets the lab's own teardown stop what it started.
            _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL if self.namespaced else signal.SIGTERM)
            if os.getppid() != me:
                os._exit(1)
            signal.pthread_sigmask(signal.SIG_SETMASK, self.original_mask)
            return
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
        _detach_stdio()
        self._loop(wake_r)

    def _loop(self, wake_r: int) -> NoReturn:
        while True:
            ready, _, _ = select.select([self.relay_r, wake_r], [], [], _ALONE_AFTER / 2)
            if wake_r in ready:
                _drain(wake_r)
            for pid, status in _reap():
                if pid == self.command:
                    self._command_ended(status)
            if self.relay_r in ready:
                relayed = os.read(self.relay_r, 64)
                if not relayed:
                    # The user's process is gone (kill -9): normally the parent-death
                    # signal has killed us already (namespace), or the guardian will.
                    os._exit(128 + signal.SIGKILL)
                for signum in relayed:
                    self._relay(signum)
            self._pass_on_signals_sent_to_us_alone()

    def _command_ended(self, status: int) -> NoReturn:
        if os.WIFSIGNALED(status):
            self._finish(f"signal {os.WTERMSIG(status)}".encode(), _exit_code(status))
        self._finish(f"exit {_exit_code(status)}".encode(), _exit_code(status))

    def _finish(self, report: bytes, code: int) -> NoReturn:
        # As a namespace's init, exiting makes the kernel kill what is left there,
        # and wait for it, before the user's process sees this one end.
        with contextlib.suppress(OSError):
            os.write(self.report_w, report)
        os._exit(code)

    def _relay(self, signum: int) -> None:
        if signum in signal.sigpending():
            # It reached us directly, so it reached the command directly too
            # (same process group): a Ctrl-C, or a kill of the whole group.
            signal.sigtimedwait({signum}, 0)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.command, signum)
        self.alone_since.pop(signum, None)

    def _pass_on_signals_sent_to_us_alone(self) -> None:
        pending = signal.sigpending()
        now = time.monotonic()
        for signum in _RELAYED:
            if signum not in pending:
                self.alone_since.pop(signum, None)
            elif now - self.alone_since.setdefault(signum, now) >= _ALONE_AFTER:
                signal.sigtimedwait({signum}, 0)
                self.alone_since.pop(signum, None)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.command, signum)


def _kill_tree(root: int) -> None:
    """SIGKILL every process below ``root`` until none is left, reaping what ends."""
    for _ in range(200):
        tree = _descendants(root)
        if not tree:
            return
        for pid in tree:
            _kill_if_still_below(pid, tree | {root})
        _reap()
        time.sleep(0.005)


def _hung_up(fd: int) -> bool:
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return any(event & select.POLLHUP for _, event in poller.poll(0))


def _parents() -> dict[int, int]:
    """Every process's parent pid, from /proc."""
    parents = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_bytes()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: fields follow the last ')'.
        parents[int(entry.name)] = int(stat.rsplit(b")", 1)[1].split()[1])
    return parents


def _descendants(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid, parent in _parents().items():
        children.setdefault(parent, []).append(pid)
    found: set[int] = set()
    todo = list(children.get(root, []))
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo.extend(children.get(pid, []))
    return found


def _kill_if_still_below(pid: int, tree: set[int]) -> None:
    """SIGKILL ``pid`` unless it has ended and the number went to a stranger."""
    try:
        handle = os.pidfd_open(pid)
    except AttributeError:  # a Python built without pidfd support
        handle = -1
    except OSError as exc:
        if exc.errno != errno.ENOSYS:
            return  # ended meanwhile
        handle = -1
    if handle < 0:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
        return
    try:
        # The pidfd pins this very process: if its parent is still in our tree,
        # it is ours (an orphan's parent is us, the subreaper).
        stat = Path(f"/proc/{pid}/stat").read_bytes()
        if int(stat.rsplit(b")", 1)[1].split()[1]) in tree:
            signal.pidfd_send_signal(handle, signal.SIGKILL)
    except (OSError, ValueError, IndexError):
        pass
    finally:
        os.close(handle)
