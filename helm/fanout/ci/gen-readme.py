#!/usr/bin/env python3
"""Build the parameter tables of the chart README from the `## @param` lines of values.yaml.

values.yaml annotations (the bitnami readme-generator convention, a subset):
  ## @section <title>          starts a table; `## ` lines right after it describe the section
  ## @param <path> <text>      documents the value at <path> (dotted); its default is read
                               from values.yaml itself

The tables replace what lies between the `<!-- params:start -->` and `<!-- params:end -->`
markers of README.md. Every value must be documented, either itself or through a documented
parent (e.g. `resources`), and every @param must name a value: otherwise the run fails.

  helm/fanout/ci/gen-readme.py           # rewrite README.md
  helm/fanout/ci/gen-readme.py --check   # exit 1 if README.md is stale or a value undocumented
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

CHART_DIR = Path(__file__).resolve().parent.parent
START = "<!-- params:start -->"
END = "<!-- params:end -->"
PARAM = re.compile(r"^\s*## @param (\S+)\s+(.*)$")
SECTION = re.compile(r"^\s*## @section (.+)$")
COMMENT = re.compile(r"^\s*## ?(?!@)(.*)$")
MISSING = object()


@dataclass
class Section:
    title: str
    description: list[str] = field(default_factory=list)
    params: list[tuple[str, str]] = field(default_factory=list)


def parse_annotations(text: str) -> list[Section]:
    sections: list[Section] = []
    in_header = False
    for line in text.splitlines():
        if match := SECTION.match(line):
            sections.append(Section(match.group(1).strip()))
            in_header = True
        elif match := PARAM.match(line):
            if not sections:
                raise SystemExit(f"@param before any @section: {line.strip()}")
            sections[-1].params.append((match.group(1), match.group(2).strip()))
            in_header = False
        elif in_header and (match := COMMENT.match(line)):
            sections[-1].description.append(match.group(1).strip())
        else:
            in_header = False
    return sections


def lookup(values: Any, path: str) -> Any:
    node = values
    for key in path.split("."):
        if not isinstance(node, dict) or key not in node:
            return MISSING
        node = node[key]
    return node


def undocumented(values: Any, documented: set[str], prefix: str = "") -> list[str]:
    """Paths of values that neither they nor a parent have a @param for."""
    missing = []
    for key, value in values.items():
        path = f"{prefix}{key}"
        if path in documented:
            continue
        if isinstance(value, dict) and value:
            missing += undocumented(value, documented, path + ".")
        else:
            missing.append(path)
    return missing


def format_value(value: Any) -> str:
    if isinstance(value, str):
        shown = json.dumps(value)
    else:
        shown = json.dumps(value, separators=(",", ":"))
    return "`" + shown.replace("|", "\\|") + "`"


def render(sections: list[Section], values: Any) -> str:
    out: list[str] = []
    for section in sections:
        out += [f"### {section.title}", ""]
        if section.description:
            out += [" ".join(section.description), ""]
        out += ["| Name | Description | Value |", "| ---- | ----------- | ----- |"]
        for path, text in section.params:
            value = format_value(lookup(values, path))
            out.append(f"| `{path}` | {text.replace('|', chr(92) + '|')} | {value} |")
        out.append("")
    return "\n".join(out)


def check_coverage(sections: list[Section], values: Any) -> list[str]:
    documented = {path for section in sections for path, _ in section.params}
    errors = [
        f"@param {p} names no value" for p in sorted(documented) if lookup(values, p) is MISSING
    ]
    errors += [f"value {p} has no @param" for p in undocumented(values, documented)]
    return errors


def updated_readme(readme: str, tables: str) -> str:
    if START not in readme or END not in readme:
        raise SystemExit(f"README.md lacks the {START} / {END} markers")
    head, rest = readme.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n\n{tables}\n{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if README.md is stale")
    parser.add_argument("--chart", type=Path, default=CHART_DIR)
    args = parser.parse_args(argv)

    values_text = (args.chart / "values.yaml").read_text()
    values = yaml.safe_load(values_text)
    sections = parse_annotations(values_text)
    errors = check_coverage(sections, values)
    if errors:
        print("\n".join(errors), file=sys.stderr)
        return 1

    readme_path = args.chart / "README.md"
    readme = readme_path.read_text()
    new = updated_readme(readme, render(sections, values))
    if args.check:
        if new != readme:
            print(f"{readme_path} is stale: run {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    readme_path.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
