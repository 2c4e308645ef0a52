"""Where things live, who runs them, and installing what is missing."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tarfile
import threading
from dataclasses import dataclass
from pathlib import Path

SERVICE_USER = "fanout-devstack"
HOST = "127.0.0.1"


class DevstackError(Exception):
    """A failure with a message meant for the user (no traceback)."""


@dataclass(frozen=True)
class Context:
    repo: Path
    root: Path  # <repo>/.devstack
    cache: Path  # unpacked distributions, shared by all checkouts on this machine
    as_root: bool
    verbose: bool = False

    @classmethod
    def create(cls, repo: Path, verbose: bool = False) -> Context:
        as_root = os.geteuid() == 0
        default_cache = (
            Path("/var/cache/fanout-devstack")  # readable by the service user, unlike /root
            if as_root
            else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "fanout-devstack"
        )
        cache = Path(os.environ.get("FANOUT_DEVSTACK_CACHE", default_cache))
        return cls(repo, repo / ".devstack", cache, as_root, verbose)

    def service_dir(self, name: str) -> Path:
        return self.root / name

    @property
    def run_user(self) -> str | None:
        """Elasticsearch and PostgreSQL refuse to run as root: as root, use a system user."""
        return SERVICE_USER if self.as_root else None

    def log(self, msg: str) -> None:
        print(f"devstack: {msg}", file=sys.stderr, flush=True)


_install_lock = threading.Lock()
_apt_updated = False


def run(argv: list[str], what: str, **kwargs: object) -> str:
    """Run a command to completion; on failure raise DevstackError with its output's tail."""
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)  # type: ignore[call-overload]
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-30:])
        raise DevstackError(f"{what} failed (exit {proc.returncode}): {' '.join(argv)}\n{tail}")
    return str(proc.stdout)


def apt_install(ctx: Context, *packages: str) -> None:
    """apt-get install (root only), with one `apt-get update` per devstack run."""
    global _apt_updated
    if not ctx.as_root:
        raise DevstackError(f"missing {' '.join(packages)}: install with apt-get (needs root)")
    with _install_lock:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        if not _apt_updated:
            ctx.log("apt-get update")
            run(["apt-get", "update", "-q"], "apt-get update", env=env)
            _apt_updated = True
        ctx.log(f"apt-get install {' '.join(packages)}")
        run(
            ["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages],
            "apt-get install",
            env=env,
        )


def need_tool(ctx: Context, tool: str, package: str) -> str:
    path = shutil.which(tool)
    if path is None:
        apt_install(ctx, package)
        path = shutil.which(tool)
    if path is None:
        raise DevstackError(f"{tool} still not found after installing {package}")
    return path


def ensure_service_user(ctx: Context) -> None:
    if not ctx.run_user:
        return
    with _install_lock:
        try:
            pwd.getpwnam(ctx.run_user)
        except KeyError:
            ctx.log(f"creating system user {ctx.run_user}")
            run(
                [
                    "useradd",
                    "--system",
                    "--user-group",
                    "--no-create-home",
                    "--home-dir",
                    "/nonexistent",
                    "--shell",
                    "/usr/sbin/nologin",
                    ctx.run_user,
                ],
                "useradd",
            )


def give_to_service_user(ctx: Context, path: Path) -> None:
    """mkdir `path` and make it (recursively, if needed) owned by the service user."""
    path.mkdir(parents=True, exist_ok=True)
    if not ctx.run_user:
        return
    user = pwd.getpwnam(ctx.run_user)
    if path.stat().st_uid != user.pw_uid or any(
        p.stat().st_uid != user.pw_uid for p in path.iterdir()
    ):
        run(["chown", "-R", f"{user.pw_uid}:{user.pw_gid}", str(path)], "chown")
    for parent in path.parents:
        if not parent.stat().st_mode & 0o001:
            raise DevstackError(
                f"{ctx.run_user} cannot reach {path}: {parent} is not world-traversable "
                f"(chmod o+x {parent}, or clone the repo elsewhere)"
            )


def java_home(min_major: int, newest: bool = True) -> Path:
    """A JDK of at least `min_major`: $JAVA_HOME if it qualifies, else the newest (or the
    oldest, for `newest=False`) that qualifies in /usr/lib/jvm."""
    candidates = []
    if os.environ.get("JAVA_HOME"):
        candidates.append(Path(os.environ["JAVA_HOME"]))
    candidates += sorted(Path("/usr/lib/jvm").glob("*"), key=_java_major, reverse=newest)
    for home in candidates:
        if (home / "bin/java").exists() and _java_major(home) >= min_major:
            return home
    raise DevstackError(f"no JDK >= {min_major} found (looked at $JAVA_HOME and /usr/lib/jvm/*)")


def remove_stale_tmp(final: Path) -> None:
    """Delete `<final>.tmp-<pid>` folders left by an interrupted install."""
    for tmp in final.parent.glob(f"{final.name}.tmp-*"):
        pid = tmp.name.rsplit("-", 1)[1]
        if not (pid.isdigit() and Path(f"/proc/{pid}").exists()):
            shutil.rmtree(tmp, ignore_errors=True)


def unpack_tar(archive: Path, final: Path) -> None:
    """Unpack `archive` into `final` whole or not at all: into `<final>.tmp-<pid>`, marked
    `.complete`, then renamed (an interrupted unpack never looks installed)."""
    remove_stale_tmp(final)
    tmp = final.with_name(f"{final.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    with tarfile.open(archive) as tar:
        if hasattr(tarfile, "data_filter"):  # 3.11.4+: refuse absolute paths, links out
            tar.extraction_filter = tarfile.data_filter
        tar.extractall(tmp)
    (tmp / ".complete").touch()
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)


def _java_major(home: Path) -> int:
    try:
        for line in (home / "release").read_text().splitlines():
            if line.startswith("JAVA_VERSION="):
                version = line.split("=", 1)[1].strip('"')
                major = version.split(".")[0]
                return int(version.split(".")[1]) if major == "1" else int(major)
    except (OSError, ValueError, IndexError):
        pass
    return 0
