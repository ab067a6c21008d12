"""A lifecycle or fault cell's timeline: the event (or the fault going on and off), each numbered
message, the close and the return, placed on one axis for the HTML drill-down (a CSS bar; the page
only positions what this returns)."""

from __future__ import annotations

from typing import Any

from ..records import FaultRecord, Lifecycle, Reconnect


def timeline(record: Lifecycle) -> dict[str, Any]:
    """Marks at ``x`` percent of an axis from the first message to the last thing seen (seconds from
    the event): ``event``, ``echoed`` and ``lost`` messages, ``close``, ``new`` (a second client),
    ``retry`` (an attempt of a Chromium page's loop that did not open), ``back`` (reconnected)
    and ``gone`` (a redeployed instance killed, or the idle time to zero over), each with its
    label (the app instance each client reached, where the server said); and
    the axis's ``start`` and ``end`` in seconds."""
    times: list[tuple[str, float, str]] = [("event", 0.0, f"{record.event.cause}: {record.event.how}")]
    if record.event.ends_after:
        ending = (
            "the old instance's SIGKILL"
            if record.event.cause != "scale-to-zero"
            else "the idle time to zero over"
        )
        times.append(("gone", record.event.ends_after, f"{ending}, {record.event.ends_after:+.2f} s"))
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
        again = record.reconnect
        if again is not None:
            times += _attempts(again)
            if again.back_after is not None:
                said = f"{RECONNECTING[again.client]} reconnected {again.back_after:.2f} s after the close"
                times.append(("back", record.closed_after + again.back_after, said + _on(again.instance)))
    fresh = record.new_connection
    if fresh is not None:
        said = f"opened{_on(fresh.instance)}" if fresh.opened else f"refused: {fresh.error}"
        times.append(("new", fresh.at, f"a new client at {fresh.at:+.2f} s: {said}"))
    return _axis(times, record.watched)


RECONNECTING = {"websockets": "websockets' connect()", "chromium": "the Chromium page's loop"}
"""Who reconnected, in a mark's label."""


def _attempts(again: Reconnect) -> list[tuple[str, float, str]]:
    """A ``retry`` mark for each attempt of a Chromium page's loop that did not open."""
    return [
        (
            "retry",
            socket.started,
            f"the page's attempt at {socket.started:+.2f} s did not open: "
            + (socket.error or f"closed with {socket.code}, wasClean {str(socket.clean).lower()}"),
        )
        for socket in again.sockets[1:]
        if socket.opened is None
    ]


def _on(instance: int | None) -> str:
    """' on instance N' where the server named the instance a client reached, else ''."""
    return f" on instance {instance}" if instance is not None else ""


def fault_timeline(records: list[FaultRecord]) -> dict[str, Any] | None:
    """The same axis for a cell's network faults, in seconds from the first one going on: each
    fault on (``event``) and off (``cleared``), and the WebSocket's end under it (``close``);
    None when no fault was put on (not measured here)."""
    applied = [record for record in records if record.applied_at is not None]
    if not applied:
        return None
    origin = min(record.applied_at for record in applied if record.applied_at is not None)
    times: list[tuple[str, float, str]] = []
    for record in applied:
        assert record.applied_at is not None
        on = record.applied_at - origin
        where = f"{record.kind} on {record.hop} (port {record.port})"
        times.append(("event", on, f"{where}, {on:+.2f} s"))
        if record.closed_after is not None:
            end = on + record.closed_after
            times.append(
                ("close", end, f"the WebSocket ended {record.closed_after:.2f} s into the {record.kind}")
            )
        if record.cleared_at is not None:
            off = record.cleared_at - origin
            times.append(("cleared", off, f"{record.kind} taken off, {off:+.2f} s"))
    return _axis(times, 0.0)


def _axis(times: list[tuple[str, float, str]], watched: float) -> dict[str, Any]:
    start = min(t for _, t, _ in times)
    end = max([t for _, t, _ in times] + [watched])
    span = (end - start) or 1.0
    return {
        "start": round(start, 3),
        "end": round(end, 3),
        "marks": [
            {"kind": kind, "x": round(100 * (at - start) / span, 2), "label": label}
            for kind, at, label in times
        ],
    }
