"""The benchmark's printed report and the comparison of two ``--json`` files (pure functions)."""

from __future__ import annotations

import math
from typing import Any

from switchboard_devstack.bench.stats import QUANTILES

SYSTEM = ("ingest", "conversation", "router", "metrics", "postgresql", "broker")
LATENCY_COLUMNS = (*(name for name, _ in QUANTILES), "max", "mean")


def _ordered(rows: dict[str, Any]) -> list[tuple[str, Any]]:
    """The system's processes first, in pipeline order (a service's replicas ``name#k`` after each other),
    then the rest (a --json file has sorted keys)."""
    order = {name: i for i, name in enumerate((*SYSTEM, "load generator", "bench watcher"))}

    def key(item: tuple[str, Any]) -> tuple[int, int]:
        base, _, replica = item[0].partition("#")
        return order.get(base, len(order)), int(replica) if replica.isdigit() else 0

    return sorted(rows.items(), key=key)


def scaled(config: dict[str, Any]) -> str:
    """``conversation x2, router x2`` for the services that ran more than one process; empty if none."""
    return ", ".join(f"{name} x{n}" for name, n in (config.get("replicas") or {}).items() if n > 1)


def _num(value: Any, fmt: str = "8.2f") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        width = int(fmt.split(".")[0]) if fmt[0].isdigit() else 0
        return "-".rjust(width)
    return format(value, fmt)


def _latency_table(latency: dict[str, dict[str, float]]) -> list[str]:
    lines = ["  " + "latency, ms".ljust(26) + "".join(c.rjust(9) for c in LATENCY_COLUMNS)]
    for name, row in latency.items():
        cells = "".join(_num(row.get(c), "9.1f") for c in LATENCY_COLUMNS)
        lines.append("  " + f"{name}".ljust(26) + cells)
    return lines


def _throughput(t: dict[str, Any]) -> list[str]:
    lines = [
        "throughput",
        f"  sent / accepted (2xx) / failed   {t['sent']} / {t['accepted']} / {t['failed']}"
        + (f"   (unanswered when the run ended: {t['unanswered']})" if t.get("unanswered") else ""),
        f"  assigned                         {t['assigned']}   (accepted but not seen assigned: "
        f"{max(0, t['accepted'] - t['assigned'])})",
    ]
    if t.get("offered_per_s"):
        lines.append(f"  offered                          {t['offered_per_s']:8.1f} msg/s  (open loop)")
    lines += [
        f"  accepted by ingest               {t['accepted_per_s']:8.1f} msg/s  "
        f"over {t['load_seconds']:.1f} s",
        f"  assigned while loading           {_num(t['assigned_during_load_per_s'], '8.1f')} msg/s  "
        "(last 80% of the load window)",
        f"  assigned, steady                 {_num(t['assigned_steady_per_s'], '8.1f')} msg/s  "
        "(between the 10th and 90th percentile assignment)",
        f"  assigned, end to end             {t['end_to_end_per_s']:8.1f} msg/s  "
        f"(first request -> last assignment; drain after the load {t['drain_seconds']:.2f} s)",
    ]
    if any((t.get("wrk_errors") or {}).values()):
        errors = ", ".join(f"{k} {v}" for k, v in t["wrk_errors"].items())
        lines.append(f"  wrk errors                       {errors}  (status: answers >= 400)")
    if t.get("reconnects"):
        lines.append(f"  generator reconnects             {t['reconnects']}")
    if t.get("message_id_check", "ok") != "ok":
        lines.append(f"  message id check                 {t['message_id_check']}")
    return lines


def _cpu(doc: dict[str, Any]) -> list[str]:
    cpu = doc["cpu"]
    accepted = doc["throughput"]["accepted"]
    total = doc["cpu_total_system_ms_per_msg"]
    lines = [
        f"CPU per message (/proc utime+stime over the {doc['window_seconds']:.1f} s window, "
        f"divided by {accepted} accepted messages)",
        "  process                       ms/msg  above idle   share   cores  idle ms/s   notes",
    ]

    def row(name: str, values: dict[str, Any], notes: str = "", share: bool = True) -> str:
        if values.get("external"):
            return f"  {name:<26} {'external: not measured':>30}"
        ms = values["ms_per_msg"]
        pct = f"{ms / total * 100:6.1f}%" if share and total else " " * 7
        return (
            f"  {name:<26} {ms:9.3f} {_num(values.get('above_idle_ms_per_msg'), '11.3f')} {pct} "
            f"{values['cores']:7.2f} {_num(values.get('idle_ms_per_s'), '10.1f')}   {notes}"
        ).rstrip()

    for name in SYSTEM:
        values = cpu.get(name, {"external": True})
        notes = ""
        replicas = values.get("replicas") or {}
        if replicas:
            notes = f"sum of {len(replicas)} replicas"
        if name == "postgresql" and not values.get("external"):
            notes = (
                f"{values['processes']} processes, {values['started']} started, {values['exited']} exited "
                "(exited backends counted through the postmaster's cutime/cstime)"
            )
        elif name == "broker" and not values.get("external"):
            notes = (
                f"~{_num(values.get('watcher_ms_per_msg'), '.3f')} ms/msg of it serves the bench watcher "
                f"(+{_num(values.get('watcher_idle_ms_per_s'), '.0f')} ms/s idle)"
            )
        lines.append(row(name, values, notes))
        for replica, replica_values in _ordered(replicas):
            lines.append(row(f"  {replica}", replica_values))
    lines.append(f"  {'total (system)':<26} {total:9.3f} {'':11}  100.0%")
    gen = cpu["load generator"]
    lines.append(
        f"  {'load generator':<26} {gen['ms_per_msg']:9.3f} {'':11} {'':7} {gen['cores']:7.2f} {'':10}   "
        f"per request sent; {doc['throughput']['generator']}"
    )
    lines.append(f"  {'total incl. load generator':<26} {doc['cpu_total_ms_per_msg']:9.3f}")
    lines.append(row("bench watcher", cpu["bench watcher"], "this process: not in the totals", share=False))
    lines.append(
        "  (idle ms/s: measured with no load and the watcher paused; above idle: ms/msg minus what the "
        "process burns idle over the window)"
    )
    return lines


def _counters(doc: dict[str, Any]) -> list[str]:
    lines = [
        "round trips per message (service /metrics counters over the window)",
        "  service           SQL stmts   SQL tx  Kafka req   Kafka requests by API; SQL by verb",
    ]
    for name, row in _ordered(doc["counters"]):
        if row.get("scraped") is False:
            lines.append(f"  {name:<16} {'no /metrics':>10}")
            continue
        apis = ", ".join(
            f"{k.removesuffix('Request')} {v:.2f}"
            for k, v in sorted(row["kafka_by_api"].items(), key=lambda kv: -kv[1])
            if v >= 0.005
        )
        verbs = ", ".join(
            f"{k} {v:.2f}" for k, v in sorted(row["sql_by_verb"].items(), key=lambda kv: -kv[1]) if v >= 0.005
        )
        detail = "; ".join(x for x in (apis, verbs) if x)
        if replicas := row.get("replicas"):
            answered = row.get("replicas_scraped", replicas)
            of = f"{answered} of {replicas}" if answered < replicas else f"{replicas}"
            detail += f"  [sum of {of} replicas]"
        lines.append(
            f"  {name:<16} {_num(row['sql_statements'], '10.2f')} {_num(row['sql_transactions'], '8.2f')} "
            f"{row['kafka_requests']:10.2f}   {detail}"
        )
    return lines


def _lag(doc: dict[str, Any]) -> list[str]:
    lags = doc.get("consumer_lag") or {}
    if not lags:
        return []
    lines = [
        "consumer lag during the load (summed over partitions; scraped once a second): records behind, and",
        "the seconds of its own input that is (records behind / records handled per second)",
        "  group                       max rec   mean rec    rec/s    max s   mean s   samples",
    ]
    for group, row in lags.items():
        max_s, mean_s = (_num(row.get(k), ".3f") for k in ("max_s", "mean_s"))
        lines.append(
            f"  {group:<26} {row['max']:>8.0f} {row['mean']:>10.1f} {_num(row.get('rate'), '.0f'):>8}"
            f" {max_s:>8} {mean_s:>8} {row['samples']:>9.0f}"
        )
    return [*lines, ""]


def _memory(doc: dict[str, Any]) -> list[str]:
    lines = ["memory at the end", "  process             pid    RSS MiB   peak MiB"]
    for name, row in _ordered(doc.get("memory", {})):
        if name == "postgresql":
            lines.append(
                f"  {name:<14} {row['pid']:>8} {row['rss_mib']:10.1f} {'':>10}   summed over "
                f"{row['processes']} processes (shared memory counted in each); PSS "
                f"{_num(row['pss_mib'], '.1f')} MiB"
            )
        else:
            rss, hwm = _num(row["rss_mib"], "10.1f"), _num(row["hwm_mib"], "10.1f")
            lines.append(f"  {name:<14} {row['pid']:>8} {rss} {hwm}")
    return lines


def render(doc: dict[str, Any]) -> str:
    config = doc["config"]
    t = doc["throughput"]
    if config["mode"] == "saturate":
        title = (
            f"saturation: {config['messages']} messages offered as fast as the generator's connections allow"
        )
    else:
        title = f"fixed offered rate: {config['messages']} messages at {config['rate']:g}/s (open loop)"
    lines = [
        "",
        f"Switchboard benchmark, {title}"
        + (" through WhatsApp webhooks (signed)" if config.get("channel", "api") == "whatsapp" else ""),
        f"load generator: {t['generator']}, {config['connections']} connections, "
        f"{doc['generator_ms_per_request']:.4f} ms CPU per request",
        f"{config['cpus']} CPUs, everything on this machine; {config['agents']} agents online (capacity "
        f"{config['capacity']} each); warm-up {config['warmup']} messages; assignment watcher fetch wait "
        f"{config['watch_wait_ms']} ms"
        + (f"; service env {' '.join(config['env'])}" if config["env"] else ""),
        *(
            [f"replicas: {scaled(config)} (in one consumer group each); every other service 1"]
            if scaled(config)
            else []
        ),
        "",
        *_throughput(t),
        "",
        *_latency_table(t["latency_ms"]),
    ]
    if "ack (wrk, closed loop)" in t["latency_ms"]:
        lines.append(
            "  (ack -> assigned percentiles come from the fixed-rate mode; wrk reports only HTTP latency)"
        )
    lines += ["", *_cpu(doc), "", *_counters(doc), "", *_lag(doc), *_memory(doc)]
    if burst := doc.get("burst"):
        lines += [
            "",
            f"burst: {burst['sent']} messages offered at {_num(burst['offered_per_s'], '.0f')}/s "
            f"({burst['accepted']} accepted, {burst['failed']} failed, {burst['assigned']} assigned; "
            f"drained {burst['drain_seconds']:.2f} s after the burst; {burst['connections']} connections"
            + (f", {burst['reconnects']} reconnects" if burst.get("reconnects") else "")
            + ")",
            *_latency_table(burst["latency_ms"]),
        ]
    if ceilings := doc.get("ceilings"):
        lines += ["", "raw ceilings (same machine, same run)"]
        for name, row in ceilings.items():
            lines.append(f"  {name:<28} {row['summary']}")
    if t["assigned"] < t["accepted"]:
        lines += [
            "",
            f"WARNING: {t['accepted'] - t['assigned']} accepted messages were not seen assigned; the "
            "measured window includes the wait for them (--assign-timeout)",
        ]
    joins = {
        name: row["group_joins"]
        for name, row in doc["counters"].items()
        if name in SYSTEM and row.get("group_joins")
    }
    if joins:
        lines += [
            "",
            "WARNING: consumer groups rebalanced inside the measured window (JoinGroup requests: "
            + ", ".join(f"{name} {n:.0f}" for name, n in joins.items())
            + "); partitions moved while measuring",
        ]
    if doc.get("services_exited"):
        lines += ["", f"WARNING: services exited during the run: {doc['services_exited']}"]
    generator_ms = doc["generator_ms_per_request"]
    if generator_ms > 0.1:
        lines += ["", f"WARNING: the load generator cost {generator_ms:.3f} ms CPU per request (> 0.1 ms)"]
    return "\n".join(lines) + "\n"


# -- comparison ---------------------------------------------------------------------------------------------


def comparable(doc: dict[str, Any]) -> dict[str, float]:
    """The figures worth comparing between two runs, flattened to ``section.key`` names."""
    out: dict[str, float] = {}
    t = doc.get("throughput", {})
    for key in ("accepted_per_s", "assigned_during_load_per_s", "assigned_steady_per_s", "end_to_end_per_s"):
        if isinstance(t.get(key), int | float):
            out[f"throughput.{key}"] = float(t[key])
    for name, row in t.get("latency_ms", {}).items():
        for q in ("p50", "p90", "p99", "max"):
            if isinstance(row.get(q), int | float):
                out[f"latency.{name}.{q}"] = float(row[q])
    for name, row in doc.get("cpu", {}).items():
        if isinstance(row.get("ms_per_msg"), int | float):
            out[f"cpu_ms_per_msg.{name}"] = float(row["ms_per_msg"])
        for replica, replica_row in (row.get("replicas") or {}).items():
            if isinstance(replica_row.get("ms_per_msg"), int | float):
                out[f"cpu_ms_per_msg.{replica}"] = float(replica_row["ms_per_msg"])
    for key in ("cpu_total_system_ms_per_msg", "cpu_total_ms_per_msg"):
        if isinstance(doc.get(key), int | float):
            out[key] = float(doc[key])
    for name, row in doc.get("counters", {}).items():
        for key in ("sql_statements", "sql_transactions", "kafka_requests"):
            if isinstance(row.get(key), int | float):
                out[f"per_msg.{name}.{key}"] = float(row[key])
    for name, row in doc.get("memory", {}).items():
        if isinstance(row.get("rss_mib"), int | float):
            out[f"rss_mib.{name}"] = float(row["rss_mib"])
    return out


def compare(old: dict[str, Any], new: dict[str, Any]) -> str:
    before, after = comparable(old), comparable(new)
    lines = [
        "",
        f"compared with the run of {old.get('config', {}).get('started_at', '?')} "
        f"({old.get('config', {}).get('mode', '?')})",
        f"  {'figure':<52} {'old':>10} {'new':>10} {'change':>9}",
    ]
    for key in [k for k in after if k in before]:
        a, b = before[key], after[key]
        change = (b - a) / abs(a) * 100 if a else math.nan
        lines.append(f"  {key:<52} {a:10.3f} {b:10.3f} {_num(change, '+8.1f')}%")
    return "\n".join(lines) + "\n"
