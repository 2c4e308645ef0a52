"""Config errors that say where: the file and line (or the env var), the key path, the problem.

``fanout.settings.load_settings`` reads the YAML file through :func:`read` first, so a file that
is missing, a directory, unreadable, not YAML or not a mapping fails with one line instead of a
traceback, and describes validation errors with :func:`describe`, e.g.::

    invalid configuration: fanout.yaml:12: sinks.postgres.port: Input should be a valid integer,
    unable to parse string as an integer (got 'abc')

Values are quoted back only for keys that are not secret-looking (``fanout.redact``).
"""

from __future__ import annotations

import difflib
import json
import os
import re
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from fanout.errors import ConfigError
from fanout.redact import is_secret_key, mask_text

ENV_PREFIX = "FANOUT_"
MAX_PROBLEMS = 10
# The branch names pydantic adds to the location of a union's errors (kafka.extra.X.int).
_UNION_BRANCH = re.compile(r"^(str|int|float|bool|none|[a-z-]+\[.*\])$")


@dataclass(frozen=True)
class YamlFile:
    path: Path
    origin: str  # how it was named: --config or FANOUT_CONFIG
    root: yaml.Node | None  # None: an empty file


def read(path: Path, origin: str) -> YamlFile:
    """Parse ``path`` (named by ``origin``) into a node tree that knows its line numbers."""
    if path.is_dir():
        inside = sorted(p.name for p in path.glob("*.y*ml"))[:3]
        hint = f" (it holds {', '.join(inside)})" if inside else ""
        raise ConfigError(f"{origin} {path}: is a directory, not a YAML file{hint}")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{origin} {path}: file not found") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{origin} {path}: not a text file (not UTF-8: {exc.reason})") from None
    except OSError as exc:
        raise ConfigError(f"{origin} {path}: cannot read it: {exc.strerror}") from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        raise ConfigError(f"invalid configuration: {_yaml_problem(path, exc)}") from None
    except yaml.YAMLError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ConfigError(f"invalid configuration: {path}: not valid YAML: {first}") from None
    if root is not None and not isinstance(root, yaml.MappingNode):
        found = "a list" if isinstance(root, yaml.SequenceNode) else "a single value"
        if isinstance(root, yaml.ScalarNode) and root.value in ("", "~", "null"):
            return YamlFile(path, origin, None)
        raise ConfigError(
            f"invalid configuration: {path}:{root.start_mark.line + 1}: the file must be a "
            f"mapping of sections (kafka:, sinks:, metrics:, logging:), not {found}"
        )
    return YamlFile(path, origin, root)


def _yaml_problem(path: Path, exc: yaml.MarkedYAMLError) -> str:
    mark = exc.problem_mark or exc.context_mark
    where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
    problem = exc.problem or exc.context or "syntax error"
    context = ""
    if exc.context and exc.context_mark and exc.problem:
        context = f" ({exc.context} at line {exc.context_mark.line + 1})"
    return f"{where}: not valid YAML: {problem}{context}"


def describe(exc: ValidationError, file: YamlFile | None, model: type[BaseModel]) -> str:
    """One line per problem: where (file:line, env var, or nothing for a default), the key
    path, pydantic's message, the offending value unless the key looks secret."""
    problems: dict[str, list[str]] = {}  # "where: key" -> messages (a union's branches merge)
    for error in exc.errors(include_url=False):
        loc = _without_union_branches(error["loc"])
        key = ".".join(str(part) for part in loc) or "<top level>"
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            message = "unknown key" + _did_you_mean(model, loc)
        elif _quotable(loc, error.get("input")):
            message += f" (got {mask_text(repr(error['input']))[:80]})"
        head = f"{_where(loc, file)}{key}"
        if message not in problems.setdefault(head, []):
            problems[head].append(message)
    lines = [f"{head}: {'; '.join(messages)}" for head, messages in problems.items()]
    if len(lines) > MAX_PROBLEMS:
        lines = [*lines[:MAX_PROBLEMS], f"… and {len(lines) - MAX_PROBLEMS} more"]
    return "invalid configuration: " + "\n  ".join(lines)


def _without_union_branches(loc: Sequence[int | str]) -> tuple[int | str, ...]:
    parts = list(loc)
    while len(parts) > 1 and isinstance(parts[-1], str) and _UNION_BRANCH.match(parts[-1]):
        parts.pop()
    return tuple(parts)


def _quotable(loc: Sequence[int | str], value: Any) -> bool:
    names = [part for part in loc if isinstance(part, str)]
    secret = any(is_secret_key(name) for name in names)
    return not secret and isinstance(value, str | int | float | bool) and value is not None


def _where(loc: Sequence[int | str], file: YamlFile | None) -> str:
    """``env NAME: `` if an env var set this key (env wins over the file), else ``file:line: ``,
    else the file alone, else nothing (a default or an argument)."""
    env = env_var_for(loc)
    if env is not None:
        return f"env {env}: "
    if file is None:
        return ""
    line = line_of(file.root, loc)
    return f"{file.path}:{line}: " if line else f"{file.path}: "


def env_var_for(loc: Sequence[int | str]) -> str | None:
    """The ``FANOUT_*`` variable that set ``loc`` or a section holding it (names are not
    case-sensitive, as in pydantic-settings)."""
    present = {name.upper(): name for name in os.environ if name.upper().startswith(ENV_PREFIX)}
    names = [str(part) for part in loc]
    for depth in range(len(names), 0, -1):
        wanted = ENV_PREFIX + "__".join(names[:depth]).upper()
        if wanted in present and _holds(os.environ[present[wanted]], loc[depth:]):
            return present[wanted]
    return None


def _holds(value: str, rest: Sequence[int | str]) -> bool:
    """Whether a section set as JSON in one env var holds ``rest`` (merged with the file, the
    key may come from the file instead)."""
    if not rest:
        return True
    try:
        node: Any = json.loads(value)
    except ValueError:
        return False
    for part in rest:
        if isinstance(node, dict) and str(part) in node:
            node = node[str(part)]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            return _UNION_BRANCH.match(str(part)) is not None
    return True


def line_of(root: yaml.Node | None, loc: Sequence[int | str]) -> int | None:
    """The 1-based line of the deepest part of ``loc`` the file holds."""
    node, line = root, None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            found = next((kv for kv in node.value if _is_key(kv[0], part)), None)
            if found is None:
                break
            line, node = found[0].start_mark.line + 1, found[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if not 0 <= part < len(node.value):
                break
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


def _is_key(node: yaml.Node, part: int | str) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.value == str(part)


# -- the settings model, walked by key path ------------------------------------------------


def _did_you_mean(model: type[BaseModel], loc: Sequence[int | str]) -> str:
    known = _keys_at(model, loc[:-1])
    close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6) if loc else []
    return f" (did you mean {close[0]}?)" if close else ""


def _keys_at(model: type[BaseModel], path: Sequence[int | str]) -> list[str]:
    target = _annotation_at(model, path)
    section = _model_in(target)
    if section is None:
        return []
    keys = []
    for name, field in section.model_fields.items():
        keys.append(field.alias or name)
    return keys


def _annotation_at(model: type[BaseModel], path: Sequence[int | str]) -> Any:
    """The type annotation at ``path`` below ``model`` (None if the path leaves the model)."""
    current: Any = model
    for part in path:
        section = _model_in(current)
        if section is not None:
            field = next((f for n, f in section.model_fields.items() if part in (n, f.alias)), None)
            if field is None:
                return None
            current = field.annotation
            continue
        container = _container_in(current)
        if container is None:
            return None
        current = container
    return current


def _model_in(annotation: Any) -> type[BaseModel] | None:
    for candidate in _alternatives(annotation):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _container_in(annotation: Any) -> Any:
    """The item type of a list or the value type of a dict in ``annotation``."""
    for candidate in _alternatives(annotation):
        origin, args = typing.get_origin(candidate), typing.get_args(candidate)
        if origin in (list, set, tuple) and args:
            return args[0]
        if origin is dict and len(args) == 2:
            return args[1]
    return None


def _alternatives(annotation: Any) -> tuple[Any, ...]:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return typing.get_args(annotation)
    return (annotation,)


def _is_structured(annotation: Any) -> str | None:
    """``list`` or ``object`` if env values for ``annotation`` must be JSON, else None."""
    for candidate in _alternatives(annotation):
        if _model_in(candidate) is not None or typing.get_origin(candidate) is dict:
            return "object"
        if typing.get_origin(candidate) in (list, set, tuple):
            return "list"
    return None


def describe_env_parsing(model: type[BaseModel], exc: Exception) -> str:
    """A ``FANOUT_*`` variable whose value pydantic-settings could not parse: name it."""
    for name, value in sorted(os.environ.items()):
        if not name.upper().startswith(ENV_PREFIX) or name.upper() == "FANOUT_CONFIG":
            continue
        path = name[len(ENV_PREFIX) :].lower().split("__")
        shape = _is_structured(_annotation_at(model, path))
        if shape is None:
            continue
        try:
            json.loads(value)
        except ValueError:
            example = '["a", "b"]' if shape == "list" else '{"key": "value"}'
            return (
                f"invalid configuration: env {name}: {'.'.join(path)} takes a JSON {shape} "
                f"in an env var, e.g. {name}='{example}'"
            )
    return f"invalid configuration: environment: {exc}"
