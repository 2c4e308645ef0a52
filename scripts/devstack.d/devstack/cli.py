"""scripts/devstack: start, stop and inspect the real local services fanout is tested on."""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from . import probes, procs, tls
from .cdc import CDC_SERVICES, SOURCE_DB, SOURCE_PASSWORD, SOURCE_USER, Connect, SourcePostgres
from .context import HOST, Context, DevstackError
from .registry import Registry
from .services import PG_DB, PG_PASSWORD, PG_USER, Kafka, Service
from .services import SERVICES as SINK_SERVICES

# Order matters: `up` lists them so, `down` stops them in reverse (Connect before Kafka).
SERVICES: list[type[Service]] = [*SINK_SERVICES, *CDC_SERVICES, Registry]

_SOURCE_PG = f"{HOST}:{SourcePostgres.port}/{SOURCE_DB}"
ENV = {
    "FANOUT_KAFKA__BOOTSTRAP_SERVERS": f"{HOST}:9092",
    "FANOUT_SINKS__POSTGRES__HOST": HOST,
    "FANOUT_SINKS__POSTGRES__PORT": "5432",
    "FANOUT_SINKS__POSTGRES__USER": PG_USER,
    "FANOUT_SINKS__POSTGRES__PASSWORD": PG_PASSWORD,
    "FANOUT_SINKS__POSTGRES__DBNAME": PG_DB,
    "FANOUT_SINKS__ELASTICSEARCH__HOSTS": f'["http://{HOST}:9200"]',
    "FANOUT_SINKS__CLICKHOUSE__MODE": "server",
    "FANOUT_SINKS__CLICKHOUSE__HOST": HOST,
    "FANOUT_SINKS__CLICKHOUSE__PORT": "8123",
    # The Debezium source (not read by fanout itself: by the tests and by hand).
    "DEVSTACK_SOURCE_PG_HOST": HOST,
    "DEVSTACK_SOURCE_PG_PORT": str(SourcePostgres.port),
    "DEVSTACK_SOURCE_PG_USER": SOURCE_USER,
    "DEVSTACK_SOURCE_PG_PASSWORD": SOURCE_PASSWORD,
    "DEVSTACK_SOURCE_PG_DBNAME": SOURCE_DB,
    "DEVSTACK_SOURCE_PG_DSN": f"postgresql://{SOURCE_USER}:{SOURCE_PASSWORD}@{_SOURCE_PG}",
    "DEVSTACK_CONNECT_URL": f"http://{HOST}:{Connect.port}",
    # The schema registry (Apicurio): its own API for connectors, /apis/ccompat/v7 for fanout.
    "DEVSTACK_REGISTRY_URL": f"http://{HOST}:{Registry.port}",
}


@contextlib.contextmanager
def exclusive(ctx: Context) -> Iterator[None]:
    """One `up`/`down` at a time per checkout."""
    ctx.root.mkdir(parents=True, exist_ok=True)
    with open(ctx.root / ".lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            ctx.log("waiting for another `devstack up/down` in this checkout to finish")
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def wait_ready(svc: Service, alive: Callable[[], int | None], deadline: float) -> str:
    """Poll the service's probe until it answers; `alive` returns an exit code once dead."""
    last = "no answer yet"
    while True:
        code = alive()
        if code is not None:
            raise DevstackError(f"{svc.name} exited (code {code}) before answering: {last}")
        try:
            return svc.probe()
        except probes.NotReady as exc:
            last = str(exc)
        if time.monotonic() > deadline:
            raise DevstackError(
                f"{svc.name} did not answer within {svc.start_timeout:.0f}s: {last}"
            )
        time.sleep(0.5)


def _fail(svc: Service, exc: DevstackError) -> DevstackError:
    logs = [svc.main_log] if svc.main_log == svc.log else [svc.log, svc.main_log]
    tails = "".join(f"\n---- last lines of {log} ----\n{procs.log_tail(log)}" for log in logs)
    return DevstackError(f"{exc}{tails}\n----")


def _check_ports(svc: Service) -> None:
    for port in (svc.port, *svc.extra_ports):
        pid, listening = procs.port_owner(port)
        if not listening:
            continue
        owner = procs.describe(pid) if pid else "owner not visible"
        hint = ""
        checkout = procs.devstack_checkout(pid) if pid else None
        if checkout:
            hint = (
                f"\n  It is the devstack of another checkout: "
                f"run `scripts/devstack down` in {checkout}"
            )
        raise DevstackError(
            f"{svc.name}: port {HOST}:{port} is already in use by a process that is not this "
            f"checkout's devstack ({owner}).{hint}"
        )


def adopt(svc: Service) -> str | None:
    """If our process runs already, wait for it to answer and return its version."""
    leader = procs.read_pidfile(svc.pidfile)
    if leader is None or not procs.is_ours(leader, svc.dir):
        return None

    def alive() -> int | None:
        return None if procs.is_alive(leader) else -1

    try:
        version = wait_ready(svc, alive, time.monotonic() + svc.start_timeout)
    except DevstackError as exc:
        raise _fail(
            svc,
            DevstackError(
                f"{exc} (pid {leader} runs; `scripts/devstack down` then `up` to restart it)"
            ),
        ) from exc
    return version


def clean_stale(svc: Service) -> None:
    """Remove what a dead run left: leftover processes of ours (e.g. orphaned PostgreSQL
    backends after a SIGKILL of the postmaster) and the pid file."""
    leftovers = procs.our_pids(svc.dir)
    if leftovers:
        svc.ctx.log(f"{svc.name}: stopping {len(leftovers)} leftover process(es) of a dead run")
        procs.stop(svc.dir, None, svc.stop_signal, 10)
    if svc.pidfile.exists():
        svc.ctx.log(f"{svc.name}: removing stale pid file")
        svc.pidfile.unlink()


def start(svc: Service) -> str:
    clean_stale(svc)
    _check_ports(svc)
    svc.install()
    launch = svc.launch()
    proc = procs.spawn(launch)
    svc.pidfile.write_text(f"{proc.pid}\n")
    try:
        return wait_ready(svc, proc.poll, time.monotonic() + svc.start_timeout)
    except DevstackError as exc:
        procs.stop(svc.dir, proc.pid, svc.stop_signal, 15)
        svc.pidfile.unlink(missing_ok=True)
        _check_ports(svc)  # something else may have taken the port meanwhile: say so
        raise _fail(svc, exc) from exc


def up_one(svc: Service) -> str:
    t0 = time.monotonic()
    if reason := svc.outdated():
        svc.ctx.log(f"{svc.name}: restarting, {reason} (its data is kept)")
        leader = procs.read_pidfile(svc.pidfile)
        procs.stop(svc.dir, leader, svc.stop_signal, svc.stop_timeout)
        svc.pidfile.unlink(missing_ok=True)
    version = adopt(svc)
    if version is not None:
        svc.after_up()
        return f"{svc.name:<14} already up  {HOST}:{svc.port:<5}  {version}"
    version = start(svc)
    svc.after_up()
    took = time.monotonic() - t0
    return f"{svc.name:<14} started     {HOST}:{svc.port:<5}  {version}  ({took:.1f}s)"


def with_needs(names: list[str]) -> set[str]:
    """The services asked for plus those they need (`up connect` starts Kafka too)."""
    wanted = set(names) if names else {cls.name for cls in SERVICES}
    while True:
        more = {n for cls in SERVICES if cls.name in wanted for n in cls.needs} - wanted
        if not more:
            return wanted
        wanted |= more


def cmd_up(ctx: Context, names: list[str]) -> int:
    t0 = time.monotonic()
    wanted = with_needs(names)
    chosen = [cls(ctx) for cls in SERVICES if cls.name in wanted]
    results: dict[str, str] = {}
    errors: dict[str, str] = {}
    done = {svc.name: threading.Event() for svc in chosen}
    answering: set[str] = set()

    def work(svc: Service) -> None:
        try:
            up_after_needs(svc)
        finally:
            done[svc.name].set()

    def up_after_needs(svc: Service) -> None:
        for need in svc.needs:
            # No deadline of our own: the needed service's start has its own and then sets it.
            done[need].wait()
            if need not in answering:
                errors[svc.name] = f"not started: it needs {need}, which is not up"
                return
        try:
            if reason := svc.not_installable():
                results[svc.name] = f"{svc.name:<14} skipped     {reason}"
                return
            results[svc.name] = up_one(svc)
            answering.add(svc.name)
        except DevstackError as exc:
            errors[svc.name] = str(exc)
        except Exception as exc:  # a bug in devstack itself: still report per service
            errors[svc.name] = f"{type(exc).__name__}: {exc}"

    with exclusive(ctx):
        threads = [threading.Thread(target=work, args=(s,), daemon=True) for s in chosen]
        for thread in threads:
            thread.start()
        for thread in threads:
            while thread.is_alive():
                thread.join(0.2)
    for svc in chosen:
        if svc.name in results:
            print(results[svc.name])
    for name, message in errors.items():
        print(f"\ndevstack: {name} FAILED: {message}", file=sys.stderr)
    if errors:
        return 1
    print(f"devstack up in {time.monotonic() - t0:.1f}s (data and logs in {ctx.root})")
    return 0


def cmd_down(ctx: Context, names: list[str], purge: bool) -> int:
    chosen = [cls(ctx) for cls in reversed(SERVICES) if not names or cls.name in names]
    with exclusive(ctx):
        for svc in chosen:
            leader = procs.read_pidfile(svc.pidfile)
            count, killed = procs.stop(svc.dir, leader, svc.stop_signal, svc.stop_timeout)
            svc.pidfile.unlink(missing_ok=True)
            if count:
                print(f"{svc.name:<14} {'killed after timeout' if killed else 'stopped'}")
            if purge:
                shutil.rmtree(svc.dir, ignore_errors=True)
                print(f"{svc.name:<14} purged {svc.dir}")
    return 0


def cmd_status(ctx: Context) -> int:
    down = 0
    for cls in SERVICES:
        svc = cls(ctx)
        if reason := svc.not_installable():
            print(f"{svc.name:<14} -     {HOST}:{svc.port:<5}  {reason}")
            continue
        pid = procs.read_pidfile(svc.pidfile)
        ours = pid is not None and procs.is_ours(pid, svc.dir)
        try:
            version = svc.probe()
            where = f"pid {pid}" if ours else "NOT started by this checkout's devstack"
            print(f"{svc.name:<14} up    {HOST}:{svc.port:<5}  {version}  ({where})")
            for ok, line in svc.details():
                print(line)
                down += 0 if ok else 1
        except probes.NotReady as exc:
            down += 1
            state = f"pid {pid} runs but does not answer" if ours else "not running"
            print(f"{svc.name:<14} down  {HOST}:{svc.port:<5}  {state}: {exc}")
    return 1 if down else 0


def secured_env(ctx: Context) -> dict[str, str]:
    """The secured endpoints (Kafka SASL_SSL, PostgreSQL over TLS): for tests and by hand, not
    FANOUT_* settings, so `eval "$(scripts/devstack env)"` keeps the plain ones."""
    ca = str(tls.certs_of(ctx).ca)
    return {
        "DEVSTACK_TLS_CA": ca,
        "DEVSTACK_KAFKA_SASL_BOOTSTRAP_SERVERS": f"{HOST}:{tls.KAFKA_SASL_PORT}",
        "DEVSTACK_KAFKA_SASL_SECURITY_PROTOCOL": "SASL_SSL",
        "DEVSTACK_KAFKA_SASL_MECHANISM": tls.KAFKA_SASL_MECHANISM,
        "DEVSTACK_KAFKA_SASL_USERNAME": tls.KAFKA_SASL_USER,
        "DEVSTACK_KAFKA_SASL_PASSWORD": tls.KAFKA_SASL_PASSWORD,
        "DEVSTACK_PG_TLS_USER": tls.PG_TLS_USER,
        "DEVSTACK_PG_TLS_PASSWORD": tls.PG_TLS_PASSWORD,
        "DEVSTACK_PG_TLS_SSLMODE": "verify-full",
    }


def cmd_env(ctx: Context) -> int:
    for key, value in {**ENV, **secured_env(ctx)}.items():
        print(f"export {key}='{value}'")
    return 0


def cmd_kafka_tool(ctx: Context, main: str, args: list[str]) -> int:
    kafka = Kafka(ctx)
    kafka.install()
    argv = kafka.cli(main, args)
    os.execv(argv[0], argv)


KAFKA_TOOLS = {
    "kafka-topics": "org.apache.kafka.tools.TopicCommand",
    "kafka-consumer-groups": "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
    "kafka-console-consumer": "org.apache.kafka.tools.consumer.ConsoleConsumer",
    "kafka-console-producer": "org.apache.kafka.tools.ConsoleProducer",
}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="scripts/devstack", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    names: list[object] = [[], *(c.name for c in SERVICES)]  # [] lets `nargs="*"` be empty
    up = sub.add_parser("up", help="install what is missing, start, wait until all answer")
    up.add_argument(
        "services",
        nargs="*",
        choices=names,
        metavar="SERVICE",
        help="only these (default: all)",
    )
    down = sub.add_parser("down", help="stop what this checkout's devstack started")
    down.add_argument(
        "services", nargs="*", choices=names, metavar="SERVICE", help="only these (default: all)"
    )
    down.add_argument("--purge", action="store_true", help="also delete data and logs")
    sub.add_parser("status", help="one line per service; exit 1 if any is down")
    sub.add_parser("env", help="print FANOUT_* and DEVSTACK_* settings as export lines")
    logs = sub.add_parser("logs", help="print the last lines of a service's log")
    logs.add_argument("service", choices=[c.name for c in SERVICES])
    logs.add_argument("-n", type=int, default=60)
    for name, main in KAFKA_TOOLS.items():
        tool = sub.add_parser(
            name, help=f"Kafka's own CLI ({main}); arguments pass through", add_help=False
        )
        tool.add_argument("args", nargs=argparse.REMAINDER)
    return p


def main(repo: Path) -> int:
    argv = sys.argv[1:]
    ctx = Context.create(repo)
    if argv and argv[0] in KAFKA_TOOLS:  # pass everything through untouched, even --help
        return cmd_kafka_tool(ctx, KAFKA_TOOLS[argv[0]], argv[1:])
    args = parser().parse_args(argv)
    try:
        if args.cmd == "up":
            return cmd_up(ctx, args.services)
        if args.cmd == "down":
            return cmd_down(ctx, args.services, args.purge)
        if args.cmd == "status":
            return cmd_status(ctx)
        if args.cmd == "logs":
            svc = next(c(ctx) for c in SERVICES if c.name == args.service)
            print(procs.log_tail(svc.main_log, args.n))
            return 0
        return cmd_env(ctx)
    except DevstackError as exc:
        print(f"devstack: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(
            "\ndevstack: interrupted. Services already started keep running and "
            "`scripts/devstack up` picks them up again; `scripts/devstack down` stops them.",
            file=sys.stderr,
        )
        return 130
