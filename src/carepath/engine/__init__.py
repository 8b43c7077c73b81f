"""Engine: plan(compiled, patient, events, as_of) → PatientPlan. Pure: no clock, no I/O, no Prefect."""

from carepath.engine.planner import plan

__all__ = ["plan"]
