"""Which code tree a worker runs: this checkout, or another one named by a variant.

``--variant 'before:@/work/baseline'`` starts every worker of the variant from that checkout,
so two code trees are measured side by side on the same stream in the same rounds. The bench
itself (stream, probes, limits, settings it writes) always runs from this checkout; only the
``fanout`` and ``sinks`` packages of the workers differ.

Every worker, of the defaults too, is started the same way so both sides of an A/B pay the
same start-up: ``python -P`` (no cwd or script directory on ``sys.path``: under ``-m`` the cwd
comes first and would shadow ``PYTHONPATH``), ``PYTHONPATH=<tree>`` alone (ahead of the
editable install's finder, which only answers after the path), cwd the tree. A short prelude
logs where ``fanout`` and ``sinks`` were imported from and then runs ``fanout.cli`` as
``python -m`` does, for the old layout (``fanout/cli.py``) and the new (``fanout/cli/``) alike;
after each drain the log line is checked against the tree, so an A/B cannot silently run the
same code twice.
"""

from __future__ import annotations

import compileall
import json
import subprocess
import sys
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import env
from tests.support.pipeline import WorkerProcess, clean_env

REPO = Path(__file__).resolve().parents[1]
MARK = "bench-imported "  # the prelude's log line: MARK + JSON {package: file}
PACKAGES = ("fanout", "sinks")
# ``fanout`` and ``sinks`` have import-free ``__init__`` modules, so importing them early
# costs nothing the worker would not pay anyway.
PRELUDE = (
    "import json, runpy, sys, fanout, sinks\n"
    f"print({MARK!r} + json.dumps({{'fanout': fanout.__file__, 'sinks': sinks.__file__}}),"
    " file=sys.stderr, flush=True)\n"
    "runpy.run_module('fanout.cli', run_name='__main__', alter_sys=True)\n"
)
CHECK = (
    "import json, fanout, sinks, fanout.cli\n"
    "print(json.dumps({'fanout': fanout.__file__, 'sinks': sinks.__file__}))\n"
)


def worker_env(tree: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    # PYTHONPATH is the tree alone: an inherited entry could point at this checkout. Of the
    # FANOUT_* variables only the stack's addresses: another one exported in the shell would
    # change what is measured.
    return clean_env({**env.connection_env(), **(extra or {}), "PYTHONPATH": str(tree)})


def command(*args: str) -> list[str]:
    """``python -m fanout.cli ARGS`` through the logging prelude (the tree: ``worker_env``)."""
    return [sys.executable, "-P", "-c", PRELUDE, *args]


def resolve(spec: str) -> Path:
    """The checkout named after ``@``, checked in a quick run of its ``fanout.cli`` import
    (fails in seconds, before a stream is generated, if the path or the tree is wrong)."""
    tree = Path(spec).expanduser().resolve()
    missing = [p for p in PACKAGES if not (tree / p / "__init__.py").is_file()]
    if missing:
        raise SystemExit(f"--variant: {tree} has no {', '.join(missing)} package")
    done = subprocess.run(
        [sys.executable, "-P", "-c", CHECK],
        env=worker_env(tree),
        cwd=tree,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        raise SystemExit(f"--variant: importing fanout.cli from {tree} failed:\n{done.stderr}")
    wrong = _outside(tree, json.loads(done.stdout.strip().splitlines()[-1]))
    if wrong:
        raise SystemExit(f"--variant: from {tree}, {wrong}")
    return tree


def compile_tree(tree: Path) -> None:
    """Byte-compile the tree's packages: drain time includes start-up, and a fresh checkout's
    first worker would otherwise pay compiling what the other side has cached."""
    for package in PACKAGES:
        compileall.compile_dir(tree / package, quiet=1)


def _outside(tree: Path, imported: dict[str, str]) -> str:
    """What was imported from outside ``tree`` ("" if nothing was)."""
    wrong = [
        f"{package} came from {imported.get(package)}"
        for package in PACKAGES
        if not Path(imported.get(package) or "/").resolve().is_relative_to(tree)
    ]
    return "; ".join(wrong)


def facts(tree: Path) -> dict[str, Any]:
    """Path, commit and whether ``fanout/`` or ``sinks/`` have uncommitted changes."""

    def git(*args: str) -> str | None:
        done = subprocess.run(["git", "-C", str(tree), *args], capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else None

    status = git("status", "--porcelain", "--", *PACKAGES)
    return {
        "path": str(tree),
        "commit": git("rev-parse", "--short", "HEAD"),
        "uncommitted_changes": bool(status) if status is not None else None,
    }


@dataclass
class TreeWorker(WorkerProcess):
    """``WorkerProcess`` started from ``tree`` (see the module docstring)."""

    tree: Path = REPO

    def start(self) -> TreeWorker:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config_path = self.workdir / f"{self.sink or 'all'}-{uuid.uuid4().hex[:6]}.yaml"
        config_path.write_text(json.dumps(self.config))  # JSON is YAML
        self.log_path = config_path.with_suffix(".log")
        args = ["--config", str(config_path), "run", *(["--sink", self.sink] if self.sink else [])]
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                command(*args),
                stdout=log,
                stderr=subprocess.STDOUT,
                env=worker_env(self.tree, self.extra_env),
                cwd=self.tree,
            )
        return self

    def verify(self) -> None:
        """Raise unless the worker's log says it imported ``fanout`` and ``sinks`` from the tree."""
        line = next((x for x in self.log().splitlines() if x.startswith(MARK)), None)
        if line is None:
            raise RuntimeError(f"worker from {self.tree} logged no imports:\n{self.log()[-2000:]}")
        wrong = _outside(self.tree, json.loads(line.removeprefix(MARK)))
        if wrong:
            raise RuntimeError(f"worker meant to run {self.tree}: {wrong}")
