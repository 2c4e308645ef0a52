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
    "all": "fanout all three sinks, one process",
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


def summarise(samples: dict[str, list[dict[str, Any]]], events: int) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for config, runs in samples.items():
        if not runs:
            continue
        seconds = [run["seconds"] for run in runs]
        entry = {
            "seconds": spread(seconds),
            "events_per_s": spread([events / s for s in seconds]),
        }
        for field in ("first_commit_s", "peak_rss_mib", "cpu_s"):
            if field in runs[0]:
                entry[field] = spread([run[field] for run in runs])
        if "converged" in runs[0]:
            entry["converged"] = all(run["converged"] for run in runs)
        if "disturbed" in runs[0]:
            entry["disturbed_runs"] = sum(1 for run in runs if run["disturbed"])
        summary[config] = entry
    return summary


def ratios(summary: dict[str, Any]) -> dict[str, float]:
    """Ratios of median rates (a rate being stream events / seconds to drain or to load)."""

    def rate(config: str) -> float | None:
        entry = summary.get(config)
        return entry["events_per_s"]["median"] if entry else None

    result: dict[str, float] = {}

    def put(name: str, top: float | None, bottom: float | None) -> None:
        if top and bottom:
            result[name] = round(top / bottom, 3)

    for sink, limit in LIMIT_OF.items():
        put(f"{sink} / {limit}", rate(sink), rate(limit))
        put(f"{sink} / raw_consume", rate(sink), rate("raw_consume"))
    put("elasticsearch / direct_es_bulk", rate("elasticsearch"), rate("direct_es_bulk"))
    put("postgres / kafka_connect_jdbc", rate("postgres"), rate("kafka_connect_jdbc"))
    alone = [r for r in (rate(s) for s in LIMIT_OF) if r]
    if alone:
        put("all / slowest alone", rate("all"), min(alone))
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
        "Rates are stream events / seconds. A drain runs from process start to lag 0 (startup, "
        "group join and table creation included); a limit times only the load call.",
        "",
        "| configuration | events/s | seconds | first commit s | peak RSS MiB | CPU s | ok |",
        "|---|---|---|---|---|---|---|",
    ]
    for config, label in LABELS.items():
        entry = summary.get(config)
        if entry:
            lines.append(_row(label, entry))
    lines += ["", "## Ratios (of median rates)", "", "| ratio | value |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in result["ratios"].items()]
    lines += _latency_lines(result.get("latency"))
    lines += ["", "## Machine", "", "```", json.dumps(result["machine"], indent=2), "```", ""]
    return "\n".join(lines)


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
        _cell(entry.get("cpu_s"), 1),
        flag,
    ]
    return "| " + " | ".join(cells) + " |"


def _latency_lines(latency: dict[str, Any] | None) -> list[str]:
    if not latency:
        return []
    lines = [
        "",
        f"## End-to-end latency, PostgreSQL sink, {latency['rate']} events/s for "
        f"{latency['seconds']} s (median of {latency['runs']} runs, min-max, seconds)",
        "",
        "| measure | p50 | p95 | p99 |",
        "|---|---|---|---|",
    ]
    for measure in ("visible", "metric"):
        stats = latency["summary"].get(measure, {})
        cells = [_cell(stats.get(p), 3) for p in ("p50", "p95", "p99")]
        lines.append(f"| {measure} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "`visible`: polled from the sink's tables (row or tombstone at the change's version or "
        "newer, 50 ms polls). `metric`: the worker's `fanout_end_to_end_latency_seconds` "
        "(to commit), interpolated within its buckets.",
        f"Worker peak RSS {_cell(latency['summary'].get('peak_rss_mib'), 0)} MiB; "
        f"achieved produce rate {_cell(latency['summary'].get('achieved_rate'), 0)} /s.",
    ]
    return lines


def chart(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = result["summary"]
    configs = [c for c in LABELS if c in summary]
    medians = [summary[c]["events_per_s"]["median"] for c in configs]
    low = [m - summary[c]["events_per_s"]["min"] for c, m in zip(configs, medians, strict=True)]
    high = [summary[c]["events_per_s"]["max"] - m for c, m in zip(configs, medians, strict=True)]
    colours = ["#999999" if c.startswith(("raw", "direct")) else "#1f77b4" for c in configs]
    colours = [
        "#d62728" if c == "kafka_connect_jdbc" else col
        for c, col in zip(configs, colours, strict=True)
    ]
    fig, ax = plt.subplots(figsize=(10, 5.5))
    ax.barh([LABELS[c] for c in configs], medians, xerr=[low, high], color=colours, capsize=3)
    ax.set_xscale("log")
    ax.invert_yaxis()
    ax.set_xlabel("events/s (log scale; median, whiskers min-max)")
    ax.set_title(f"fanout benchmark {result['date']}: {result['stream']['events']:,} events")
    for y, value in enumerate(medians):
        ax.text(value, y, f" {value:,.0f}", va="center", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
