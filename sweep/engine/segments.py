"""A run's attempts as segments of its provenance: where each attempt ran, from which step to
which, for how long and how it ended (a run preempted, lost or interrupted and resumed has
several; its record sums them)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["segment_of", "segments_provenance"]


def segment_of(prov: Mapping[str, Any], ended: str) -> dict[str, Any] | None:
    """The segment of an attempt from its worker's provenance (None: it ran no step)."""
    if prov.get("from_step") is None:
        return None
    start = int(prov.get("from_step") or 0)
    return {
        "attempt": prov.get("attempt"),
        "worker": prov.get("worker"),
        "host": prov.get("host"),
        "job_id": prov.get("job_id"),
        "from_step": start,
        "to_step": int(prov.get("to_step") or start),
        "seconds": round(float(prov.get("seconds") or 0.0), 3),
        "ended": ended,
        "start": prov.get("start_time"),
        "end": prov.get("end_time"),
    }


def segments_provenance(segments: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """What a run's record says of its attempts: every segment, the batch jobs, preemptions,
    the steps it resumed from, its compute time (and wall time: all of its attempts', not the
    last one's)."""
    out: dict[str, Any] = {}
    if len(segments) > 1:
        out["wall_time"] = sum(float(s.get("seconds") or 0.0) for s in segments)
    out.update(
        segments=list(segments),
        jobs=sorted({str(s["job_id"]) for s in segments if s.get("job_id")}),
        preemptions=sum(s["ended"] == "preempted" for s in segments),
        resumed_from_steps=[s["from_step"] for s in segments if s.get("from_step")],
        compute_seconds=round(sum(float(s.get("seconds") or 0.0) for s in segments), 3),
    )
    return out
