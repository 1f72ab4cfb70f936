"""The pure parts of sweep/hpc_prototype.py: walltime parsing, lifetime arguments, squeue's time
left, and the step loop's forced checkpoint (no cluster; the SLURM tests cover the rest)."""

from __future__ import annotations

import pytest

from sweep.hpc_prototype import (
    lifetime_args,
    parse_time_left,
    parse_walltime,
    preempt_requested,
    run_steps,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("00:01:00", 60),
        ("1:30", 90),
        ("12:00:00", 43200),
        ("2-00:00:01", 172801),
        ("0:05", 5),
    ],
)
def test_parse_walltime_accepts_slurm_and_pbs_forms(text: str, seconds: float) -> None:
    assert parse_walltime(text) == seconds


@pytest.mark.parametrize("bad", ["1h", "90", "", "1:2:3:4", "-1:00"])
def test_parse_walltime_names_the_bad_value_and_the_allowed_forms(bad: str) -> None:
    with pytest.raises(ValueError, match=rf"bad walltime '{bad}'; allowed: HH:MM:SS, MM:SS or D-HH:MM:SS"):
        parse_walltime(bad)


def test_lifetime_args_leave_the_margin_at_the_latest_stagger() -> None:
    assert lifetime_args("01:00:00", margin=120, stagger=60) == [
        "--lifetime",
        "3420s",
        "--lifetime-stagger",
        "60s",
    ]
    assert lifetime_args(60.0, margin=5) == ["--lifetime", "55s"]
    with pytest.raises(ValueError, match="leaves no lifetime"):
        lifetime_args("00:01:00", margin=50, stagger=10)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("59", 59),
        ("4:59", 299),
        ("1:00:00", 3600),
        ("1-00:00:00", 86400),
        ("UNLIMITED", None),
        ("NOT_SET", None),
        ("INVALID", None),
    ],
)
def test_parse_time_left_reads_squeue_percent_l(text: str, seconds: float | None) -> None:
    assert parse_time_left(text) == seconds


def test_run_steps_stops_between_steps_with_its_state_as_the_checkpoint() -> None:
    asked = []
    saved = []

    def stop() -> bool:
        asked.append(1)
        return len(asked) > 3  # the drain comes while step 3 runs

    out = run_steps(
        "r",
        lambda s, i: s + [i],
        [],
        0,
        10,
        should_stop=stop,
        on_checkpoint=lambda s, k: saved.append((list(s), k)),
    )
    assert (out.status, out.step, out.state, out.start_step) == ("preempted", 3, [0, 1, 2], 0)
    assert saved == [([0, 1, 2], 3)]
    again = run_steps("r", lambda s, i: s + [i], out.state, out.step, 10)
    assert (again.status, again.step, again.state) == ("done", 10, list(range(10)))


def test_preempt_requested_is_false_outside_a_worker() -> None:
    assert preempt_requested() is False
