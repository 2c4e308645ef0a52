"""Process bookkeeping for devstack: which processes are ours, starting, stopping, ports.

A process is *ours* for a service when it is alive (not a zombie) and either its working
directory lies inside that service's folder under `.devstack/` (every service is started
there; PostgreSQL stays in its data dir) or its environment carries the marker
`FANOUT_DEVSTACK_SERVICE=<that folder>` (Elasticsearch's launcher changes directory to its
home). Both are inherited by children (Elasticsearch's server JVM, PostgreSQL's backends), so
this survives a lost pid file, and it rejects a recycled pid that now belongs to another
program.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Launch:
    """How to start one service process (detached, in its own session)."""

    argv: list[str]
    cwd: Path
    log: Path
    env: dict[str, str] = field(default_factory=dict)
    user: str | None = None  # run as this system user (root only)


def _proc_state(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def is_alive(pid: int) -> bool:
    state = _proc_state(pid)
    return state is not None and state not in ("Z", "X")


def proc_cwd(pid: int) -> Path | None:
    try:
        return Path(os.readlink(f"/proc/{pid}/cwd"))
    except OSError:
        return None


def proc_cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _all_pids() -> Iterator[int]:
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            yield int(entry.name)


def _within(path: Path | None, root: Path) -> bool:
    return path is not None and (path == root or root in path.parents)


MARKER = "FANOUT_DEVSTACK_SERVICE"


def _has_marker(pid: int, root: Path) -> bool:
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False
    return f"{MARKER}={root}".encode() in environ.split(b"\0")


def devstack_checkout(pid: int) -> Path | None:
    """The checkout whose devstack started `pid`, if any did."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        environ = []
    prefix = f"{MARKER}=".encode()
    where = next(
        (Path(e[len(prefix) :].decode()) for e in environ if e.startswith(prefix)), proc_cwd(pid)
    )
    if where and ".devstack" in where.parts:
        return Path(*where.parts[: where.parts.index(".devstack")])
    return None


def is_ours(pid: int, root: Path) -> bool:
    if pid == os.getpid() or not is_alive(pid):
        return False
    return _within(proc_cwd(pid), root) or _has_marker(pid, root)


def our_pids(root: Path) -> list[int]:
    """Every live process whose cwd is inside `root`."""
    me = os.getpid()
    return [pid for pid in _all_pids() if pid != me and is_ours(pid, root)]


def read_pidfile(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def spawn(launch: Launch) -> subprocess.Popen[bytes]:
    """Start detached (own session, stdin from /dev/null, output appended to the log)."""
    launch.log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **launch.env, MARKER: str(launch.cwd)}
    with open(launch.log, "ab") as log:
        log.write(f"\n==== devstack start {time.strftime('%F %T')}: {launch.argv}\n".encode())
        log.flush()
        return subprocess.Popen(
            launch.argv,
            cwd=launch.cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            user=launch.user,
            group=launch.user,
            extra_groups=[] if launch.user else None,
        )


def _signal_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def stop(root: Path, leader: int | None, sig: int, timeout: float) -> tuple[int, bool]:
    """Stop every process of ours under `root`: `sig` to the leader (or all if it is gone),
    wait up to `timeout` s, then SIGKILL what is left. Returns (count, needed_kill)."""
    pids = our_pids(root)
    if not pids:
        return 0, False
    if leader is not None and leader in pids:
        _signal_all([leader], sig)
    else:
        _signal_all(pids, sig)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(is_ours(pid, root) for pid in pids):
            return len(pids), False
        time.sleep(0.2)
    left = our_pids(root)
    _signal_all(left, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while our_pids(root) and time.monotonic() < deadline:
        time.sleep(0.1)
    return len(pids), bool(left)


def _listen_inodes(port: int) -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            local, state, inode = cols[1], cols[3], cols[9]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                inodes.add(inode)
    return inodes


def port_owner(port: int) -> tuple[int | None, bool]:
    """(pid holding a LISTEN socket on `port` or None if unknown, whether it is listening)."""
    inodes = _listen_inodes(port)
    if not inodes:
        return None, False
    wanted = {f"socket:[{inode}]" for inode in inodes}
    for pid in _all_pids():
        try:
            fds = os.scandir(f"/proc/{pid}/fd")
            for fd in fds:
                try:
                    if os.readlink(fd.path) in wanted:
                        return pid, True
                except OSError:
                    continue
        except OSError:
            continue
    return None, True


def describe(pid: int) -> str:
    cmd = " ".join(proc_cmdline(pid))
    if len(cmd) > 160:
        cmd = cmd[:157] + "..."
    return f"pid {pid}, cwd {proc_cwd(pid)}, cmd: {cmd}"


def log_tail(path: Path, lines: int = 40) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 64 * 1024))
            text = fh.read().decode(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])
