"""Summaries (median, min, max of the runs), ratios, and the JSON / Markdown / PNG outputs."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

LABELS = {
    "raw_consume": "raw consume + decode (limit)",
    "direct_postgres": "PostgreSQL COPY of final rows (limit)",
    "direct_es_parallel": "ES parallel_bulk of final docs (limit)",
    "direct_es_bulk": "ES helpers.bulk of final docs (limit)",
    "direct_clickhouse": "ClickHouse columnar insert of final rows (limit)",
    "postgres": "fanout postgres sink alone",
    "elasticsearch": "fanout elasticsearch sink alone",
    "clickhouse": "fanout clickhouse sink alone",
    "all3": "fanout all three sinks at once, one process each (production)",
    "all": "fanout all three sinks, one process (local use)",
    "snapshot_postgres": "fanout postgres sink alone, snapshot of final rows",
    "snapshot_elasticsearch": "fanout elasticsearch sink alone, snapshot of final rows",
    "snapshot_clickhouse": "fanout clickhouse sink alone, snapshot of final rows",
    "kafka_connect_jdbc": "Kafka Connect + Debezium JDBC sink (peer)",
}
LIMIT_OF = {
    "postgres": "direct_postgres",
    "elasticsearch": "direct_es_parallel",
    "clickhouse": "direct_clickhouse",
}


def spread(values: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
        "n": len(values),
    }


def base_and_variant(key: str) -> tuple[str, str]:
    """``"postgres@wait200"`` -> ``("postgres", "wait200")``; the defaults' variant is ``""``."""
    base, _, variant = key.partition("@")
    return base, variant


def label(key: str) -> str:
    base, variant = base_and_variant(key)
    return LABELS[base] + (f" [{variant}]" if variant else "")


def summarise(samples: dict[str, list[dict[str, Any]]], events: int) -> dict[str, Any]:
    """Per configuration: spreads of its runs; a rate is items / seconds, the items being the
    stream's change events, or a snapshot's rows (``"items"`` in its samples)."""
    summary: dict[str, Any] = {}
    for config, runs in samples.items():
        if not runs:
            continue
        seconds = [run["seconds"] for run in runs]
        entry: dict[str, Any] = {
            "seconds": spread(seconds),
            "events_per_s": spread(
                [run.get("items", events) / s for run, s in zip(runs, seconds, strict=True)]
            ),
        }
        for field in ("first_commit_s", "peak_rss_mib", "peak_rss_sum_mib", "cpu_s"):
            if field in runs[0]:
                entry[field] = spread([run[field] for run in runs])
        if "converged" in runs[0]:
            entry["converged"] = all(run["converged"] for run in runs)
        if "disturbed" in runs[0]:
            entry["disturbed_runs"] = sum(1 for run in runs if run["disturbed"])
        summary[config] = entry
    return summary


def ratios(summary: dict[str, Any]) -> dict[str, float]:
    """Ratios of median rates, for the defaults and for each variant (``... [variant]``).

    ``(churn)``: the sink's change events/s over the direct load of the final rows as stream
    events / load seconds (a stream of ~10 changes a row against one load: no sink gets near);
    ``(same rows)``: the sink draining the final rows as a snapshot against the direct load of
    exactly those rows (load seconds / drain seconds). Then each configuration over the same
    configuration of each variant (``postgres / postgres [before]``).
    """
    result: dict[str, float] = {}
    variants = sorted({base_and_variant(key)[1] for key in summary})
    for variant in variants:
        suffix = f" [{variant}]" if variant else ""
        for name, value in _ratios(summary, f"@{variant}" if variant else "").items():
            result[name + suffix] = value
    return result | _against_variants(summary)


def _against_variants(summary: dict[str, Any]) -> dict[str, float]:
    """Defaults' median rate / the variant's, for every configuration measured both ways: with
    a variant naming the old tree (``before:@...``) this is "after / before", the number a
    restructure is held to."""
    result: dict[str, float] = {}
    for key in ordered(summary):
        base, variant = base_and_variant(key)
        if variant and base in summary:
            mine, theirs = (summary[k]["events_per_s"]["median"] for k in (base, key))
            if mine and theirs:
                result[f"{base} / {base} [{variant}]"] = round(mine / theirs, 3)
    return result


def _ratios(summary: dict[str, Any], tag: str) -> dict[str, float]:
    def median(config: str, measure: str) -> float | None:
        entry = summary.get(config)
        return entry[measure]["median"] if entry else None

    def rate(config: str) -> float | None:
        return median(config, "events_per_s")

    result: dict[str, float] = {}

    def put(name: str, top: float | None, bottom: float | None) -> None:
        if top and bottom:
            result[name] = round(top / bottom, 3)

    for sink, limit in LIMIT_OF.items():
        put(
            f"{sink} / {limit} (same rows)",
            median(limit, "seconds"),
            median(f"snapshot_{sink}{tag}", "seconds"),
        )
        put(f"{sink} / {limit} (churn)", rate(sink + tag), rate(limit))
        put(f"{sink} / raw_consume", rate(sink + tag), rate("raw_consume"))
    put(
        "elasticsearch / direct_es_bulk (churn)",
        rate("elasticsearch" + tag),
        rate("direct_es_bulk"),
    )
    put("postgres / kafka_connect_jdbc", rate("postgres" + tag), rate("kafka_connect_jdbc"))
    alone = [r for r in (rate(s + tag) for s in LIMIT_OF) if r]
    if alone:
        put("all3 (one process each) / slowest alone", rate("all3" + tag), min(alone))
        put("all (one process) / slowest alone", rate("all" + tag), min(alone))
    return result


def markdown(result: dict[str, Any]) -> str:
    summary, stream = result["summary"], result["stream"]
    lines = [
        f"# Benchmark {result['date']}",
        "",
        f"`{result['command']}`",
        "",
        f"{stream['events']} change events ({stream['records']} Kafka records incl. tombstones), "
        f"mix {stream['mix']}, {stream['keys']} keys over {len(stream['tables'])} tables "
        f"({stream['tables']} columns), {stream['partitions']} partitions, "
        f"{stream['avg_value_bytes']} B a value on the wire (Connect schema inline), "
        f"{stream['avg_payload_bytes']} B of payload. Median of {result['runs']} runs (min-max).",
        "",
        "Rates are stream events / seconds (rows / seconds for a snapshot). A drain runs from "
        "process start to lag 0 (startup, group join and table creation included); a limit "
        "times only the load call. Several processes: the slowest drain, summed CPU, the "
        "highest single peak RSS and (RSS sum) the sum of each process's peak.",
        *_snapshot_lines(result.get("snapshot_stream")),
        *_placeholder_lines(result),
        *_variant_lines(result.get("variants", {}), result.get("trees", {})),
        "",
        "| configuration | events/s | seconds | first commit s | peak RSS MiB | RSS sum MiB "
        "| CPU s | ok |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += [_row(label(key), summary[key]) for key in ordered(summary)]
    lines += ["", "## Ratios (of median rates)", "", "| ratio | value |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in result["ratios"].items()]
    lines += _latency_lines(result.get("latency"))
    lines += ["", "## Machine", "", "```", json.dumps(result["machine"], indent=2), "```", ""]
    return "\n".join(lines)


def ordered(summary: dict[str, Any]) -> list[str]:
    """Configurations in LABELS order, each followed by its variants."""
    rank = {config: n for n, config in enumerate(LABELS)}
    return sorted(summary, key=lambda key: (rank[base_and_variant(key)[0]], key))


def _placeholder_lines(result: dict[str, Any]) -> list[str]:
    """The streams of ``stream.placeholders`` variants: the same changes, another topic."""
    lines = []
    for key, facts in sorted(result.items()):
        if key.startswith("stream_churn@"):
            lines += [
                "",
                f"Placeholder stream ({key.removeprefix('stream_churn@')}): the same changes in "
                f"topic `{facts['topic']}`, {facts['updates_with_placeholders']:.1%} of the "
                "updates carrying Debezium's unavailable-value placeholder in every text, json "
                f"and array column they left unchanged; {facts['avg_value_bytes']} B a value.",
            ]
    return lines


def _snapshot_lines(snapshot: dict[str, Any] | None) -> list[str]:
    if not snapshot:
        return []
    return [
        "",
        f"Snapshot: the final rows ({snapshot['events']}) as a Debezium initial snapshot (`op: r`, "
        f"one record per row, same tables and schema) on their own topic, drained by each sink "
        f"alone into fresh targets; compared with the direct load of exactly those rows.",
    ]


def _variant_lines(variants: dict[str, Any], trees: dict[str, Any]) -> list[str]:
    named = {name: o for name, o in variants.items() if name != "defaults"}
    if not named:
        return []
    shown = "; ".join(f"`{name}`: {json.dumps(o) if o else 'same'}" for name, o in named.items())
    lines = ["", f"Variants (worker settings over the defaults, same rounds): {shown}."]
    if any(tree != trees.get("defaults") for tree in trees.values()):
        # Only worth a line when a variant runs other code than the defaults.
        shown = "; ".join(f"`{name}`: {_tree(tree)}" for name, tree in trees.items())
        lines += ["", f"Code trees the workers ran (imports checked in every worker): {shown}."]
    return lines


def _tree(tree: dict[str, Any]) -> str:
    dirty = " with uncommitted changes to fanout/ or sinks/" if tree["uncommitted_changes"] else ""
    return f"{tree['path']} at {tree['commit'] or 'no git commit'}{dirty}"


def _cell(entry: dict[str, Any] | None, digits: int = 1) -> str:
    if not entry:
        return ""
    fmt = f"{{:,.{digits}f}}"
    return f"{fmt.format(entry['median'])} ({fmt.format(entry['min'])}-{fmt.format(entry['max'])})"


def _row(label: str, entry: dict[str, Any]) -> str:
    ok = entry.get("converged")
    disturbed = entry.get("disturbed_runs")
    flag = "" if ok is None else ("yes" if ok else "NO")
    if disturbed:
        flag += f" ({disturbed} disturbed)"
    cells = [
        label,
        _cell(entry["events_per_s"], 0),
        _cell(entry["seconds"], 2),
        _cell(entry.get("first_commit_s"), 2),
        _cell(entry.get("peak_rss_mib"), 0),
        _cell(entry.get("peak_rss_sum_mib"), 0),
        _cell(entry.get("cpu_s"), 1),
        flag,
    ]
    return "| " + " | ".join(cells) + " |"


def _latency_lines(latency: dict[str, Any] | None) -> list[str]:
    if not latency:
        return []
    by_variant = latency.get("by_variant") or {"": latency}  # results from before variants
    lines = [
        "",
        f"## End-to-end latency, PostgreSQL sink, {latency['rate']} events/s for "
        f"{latency['seconds']} s (median of {latency['runs']} runs, min-max, seconds)",
        "",
        "| measure | p50 | p95 | p99 | worker peak RSS MiB | achieved events/s |",
        "|---|---|---|---|---|---|",
    ]
    for variant, measured in by_variant.items():
        summary = measured["summary"]
        tail = [_cell(summary.get("peak_rss_mib"), 0), _cell(summary.get("achieved_rate"), 0)]
        for measure in ("visible", "metric"):
            stats = summary.get(measure, {})
            cells = [_cell(stats.get(p), 3) for p in ("p50", "p95", "p99")] + tail
            name = measure + (f" [{variant}]" if variant else "")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "`visible`: polled from the sink's tables (row or tombstone at the change's version or "
        "newer, 50 ms polls). `metric`: the worker's `fanout_end_to_end_latency_seconds` "
        "(to commit), interpolated within its buckets.",
    ]
    return lines


def chart(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = result["summary"]
    configs = ordered(summary)
    medians = [summary[c]["events_per_s"]["median"] for c in configs]
    low = [m - summary[c]["events_per_s"]["min"] for c, m in zip(configs, medians, strict=True)]
    high = [summary[c]["events_per_s"]["max"] - m for c, m in zip(configs, medians, strict=True)]
    colours = [_colour(c) for c in configs]
    fig, ax = plt.subplots(figsize=(11, 2 + 0.35 * len(configs)))
    ax.barh([label(c) for c in configs], medians, xerr=[low, high], color=colours, capsize=3)
    ax.set_xscale("log")
    ax.invert_yaxis()
    ax.set_xlabel("events/s, snapshot rows/s (log scale; median, whiskers min-max)")
    ax.set_title(f"fanout benchmark {result['date']}: {result['stream']['events']:,} events")
    for y, value in enumerate(medians):
        ax.text(value, y, f" {value:,.0f}", va="center", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _colour(config: str) -> str:
    if config.startswith(("raw", "direct")):
        return "#999999"  # limits
    if config == "kafka_connect_jdbc":
        return "#d62728"  # the peer
    return "#2ca02c" if config.startswith("snapshot_") else "#1f77b4"
