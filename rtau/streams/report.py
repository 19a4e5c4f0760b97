"""Stream counters for people: a rich table for `--stats` and a short line for the summary.

Run: `Console().print(counters_table(sinks.stream_counters()))`.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table

from rtau.streams.schema import StreamCounters


def counters_table(counters: Sequence[StreamCounters], title: str = "streams") -> Table:
    """One row per stream: endpoint, clients (now / ever), messages built, sent, dropped."""
    table = Table(title=title)
    for column in ("stream", "endpoint"):
        table.add_column(column)
    for column in ("clients", "messages", "sent", "dropped"):
        table.add_column(column, justify="right")
    for c in counters:
        table.add_row(c.kind, c.endpoint, f"{c.clients}/{c.clients_seen}", str(c.messages),
                      str(c.sent), str(c.dropped))
    return table


def counters_line(counters: Sequence[StreamCounters]) -> str:
    """`; osc: 73 sent, 0 dropped; ws: 2 client(s), 144 sent, 0 dropped` (empty: no stream)."""
    parts = []
    for c in counters:
        clients = f"{c.clients_seen} client(s), " if c.kind == "ws" else ""
        parts.append(f"; {c.kind}: {clients}{c.sent} sent, {c.dropped} dropped")
    return "".join(parts)
