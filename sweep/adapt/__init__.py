"""Adaptive sweeps: python-adaptive learners choose the runs, on the same engine and store.
Re-exports only.

``spec``: the spec file (solver, fixed and varied parameters, objective, learner, stop rule);
``objectives``: the reducers from a run's stored result to the number a learner is told;
``learners``: python-adaptive's learners over the varied parameters; ``loop``: the rounds of
ask, run (``run_sweep``), tell, and the replay that resumes from the store.
"""

from __future__ import annotations

from .loop import AdaptResult, Point, adapt, replay
from .spec import AdaptSpec, load_spec

__all__ = ["AdaptResult", "AdaptSpec", "Point", "adapt", "load_spec", "replay"]
