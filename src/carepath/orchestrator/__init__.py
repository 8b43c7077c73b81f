"""Running a pathway over a cohort, free of Prefect.

- `spec`: `RunSpec`, the run's context resolved once at the edge (pathway compiled once
  with its source digest, a timezone-aware as-of, ledger URL, output folder, run id);
- `executor`: where steps run, behind the `Executor` Protocol (`InProcess`,
  `ProcessPool`; Prefect tasks live in carepath.runtime);
- `sequence`: the exactly-once sequence of a sweep and of an event-triggered re-plan;
- `emission`, `cohort`, `pinning`, `planning`: the steps (plan a shard, record it,
  send its letters, write documents), shard files, version pins, and `carepath plan`.
"""
