"""A lifecycle cell's timeline: the event, each numbered message, the close and the return, placed
on one axis for the HTML drill-down (a CSS bar; the page only positions what this returns)."""

from __future__ import annotations

from typing import Any

from ..records import Lifecycle


def timeline(record: Lifecycle) -> dict[str, Any]:
    """Marks at ``x`` percent of an axis from the first message to the last thing seen (seconds from
    the event): ``event``, ``echoed`` and ``lost`` messages, ``close``, ``new`` (a second client) and
    ``back`` (reconnected), each with its label; and the axis's ``start`` and ``end`` in seconds."""
    times: list[tuple[str, float, str]] = [("event", 0.0, f"{record.event.cause}: {record.event.how}")]
    for message in record.messages:
        if message.echoed is None:
            times.append(
                ("lost", message.sent, f"#{message.seq} sent at {message.sent:+.2f} s, never echoed")
            )
        else:
            times.append(
                (
                    "echoed",
                    message.sent,
                    f"#{message.seq} sent {message.sent:+.2f} s, echoed {message.echoed:+.2f} s",
                )
            )
    if record.closed_after is not None:
        frame = "close frame" if record.close_frame_received else "no close frame"
        times.append(
            (
                "close",
                record.closed_after,
                f"closed {record.closed_after:+.2f} s: code {record.code}, {frame}, by {record.closed_by}",
            )
        )
        back = record.reconnect.back_after if record.reconnect else None
        if back is not None:
            times.append(("back", record.closed_after + back, f"reconnected {back:.2f} s after the close"))
    fresh = record.new_connection
    if fresh is not None:
        said = "opened" if fresh.opened else f"refused: {fresh.error}"
        times.append(("new", fresh.at, f"a new client at {fresh.at:+.2f} s: {said}"))
    start = min(t for _, t, _ in times)
    end = max([t for _, t, _ in times] + [record.watched])
    span = (end - start) or 1.0
    return {
        "start": round(start, 3),
        "end": round(end, 3),
        "marks": [
            {"kind": kind, "x": round(100 * (at - start) / span, 2), "label": label}
            for kind, at, label in times
        ],
    }
