"""The ledger's tables as the code queries them, on one `MetaData`.

The database gets them from the Alembic revisions in carepath.sinks.ledger_migrations, run
when a ledger is opened: a change here needs a new revision there (a test compares the
two). Every table of the ledger's database is here, whichever module queries it: importing
this module puts all of them on `ledger_metadata`.
"""

from __future__ import annotations

from sqlalchemy import Column, Index, Integer, LargeBinary, MetaData, PrimaryKeyConstraint, String, Table, Text

ledger_metadata = MetaData()

# Keyed by (pathway, id): a patient ref may be enrolled in two pathways that share one
# ledger, and each pathway's outputs (its care-plan summary `careplan-<ref>` among them)
# are its own; every read and write names the pathway.
outputs_table = Table(
    "outputs", ledger_metadata,
    Column("id", String(80), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("patient", String(200), nullable=False),
    Column("pathway", String(200), nullable=False),
    Column("digest", String(64), nullable=False),
    Column("body", Text, nullable=False),
    Column("retired", Integer, nullable=False, default=0),  # 1: no longer in the patient's plan
    Column("first_run", String(64), nullable=False),
    Column("updated_run", String(64), nullable=False),
    # The pathway generation at which what the output exports last changed (its body,
    # its retirement, its letter's first send; revision 0008): `export --since` compares
    # it with a sweep's, so changes made by event-triggered runs are included too.
    Column("changed_gen", Integer, nullable=False, server_default="0"),
    PrimaryKeyConstraint("pathway", "id", name="pk_outputs"),
    Index("ix_outputs_pathway_patient", "pathway", "patient"),
    Index("ix_outputs_pathway_updated_run", "pathway", "updated_run"),  # a sweep's change feed
    Index("ix_outputs_pathway_changed_gen", "pathway", "changed_gen"),  # export --since
)

# Every sweep (revision 0008): its stamp (the `changes/<sweep-stamp>/` folder name, also
# when it changed nothing), as-of and the generation after it, so `export --since STAMP`
# knows the stamp and where in the ledger's history it stands.
sweeps_table = Table(
    "sweeps", ledger_metadata,
    Column("pathway", String(200), nullable=False),
    Column("stamp", String(40), nullable=False),
    Column("as_of", String(40), nullable=False),   # UTC, fixed width (sorts as the instants do)
    Column("generation", Integer, nullable=False),
    Column("run", String(64), nullable=False),
    PrimaryKeyConstraint("pathway", "stamp", name="pk_sweeps"),
    Index("ix_sweeps_pathway_as_of", "pathway", "as_of"),
)

# Per pathway: two pathways' documents (in their own output folders) sharing one ledger
# are each rewritten when their own content is stale.
snapshots_table = Table(
    "document_snapshots", ledger_metadata,
    Column("pathway", String(200), primary_key=True),
    Column("sink", String(64), primary_key=True),
    Column("state", String(200), nullable=False),  # generation and as-of the document shows
    Column("run", String(64), nullable=False),
)

# Per pathway, so one pathway's run never makes another's documents stale.
generations_table = Table(
    "pathway_generations", ledger_metadata,
    Column("pathway", String(200), primary_key=True),
    Column("value", Integer, nullable=False),
)

# Version pinning: the pathway version each patient enrolled under, and each version's
# source, so a pinned patient can be re-planned under the rules they started with.
pins_table = Table(
    "pins", ledger_metadata,
    Column("patient", String(200), primary_key=True),
    Column("pathway", String(200), primary_key=True),
    Column("version", String(64), nullable=False),
    Column("run", String(64), nullable=False),
)

versions_table = Table(
    "pathway_versions", ledger_metadata,
    Column("pathway", String(200), primary_key=True),
    Column("version", String(64), primary_key=True),
    Column("digest", String(64), nullable=False),
    Column("source", Text, nullable=False),
)

# Each migration applied (revision 0004): from, to, the step map (old step → new steps,
# JSON) and the reason signed off. Later sweeps read the step maps so that events naming a
# renamed step's old ids still close the new step's work.
migrations_table = Table(
    "pathway_migrations", ledger_metadata,
    Column("pathway", String(200), primary_key=True),
    Column("from_version", String(64), primary_key=True),
    Column("to_version", String(64), primary_key=True),
    Column("steps", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("run", String(64), nullable=False),
)

# The open work a migration withdrew (it has no counterpart in the new version), with the
# reason, so what the preview listed stays on record after it was applied (revision 0004).
withdrawals_table = Table(
    "migration_withdrawals", ledger_metadata,
    Column("pathway", String(200), primary_key=True),
    Column("task", String(80), primary_key=True),
    Column("patient", String(200), nullable=False),
    Column("step", String(200), nullable=False),
    Column("from_version", String(64), nullable=False),
    Column("to_version", String(64), nullable=False),
    Column("why", Text, nullable=False),
    Column("run", String(64), nullable=False),
)

# One patient's incremental state, written in one statement after their outputs were
# recorded and their due letters queued (revision 0006 merged the plan digest into it):
# - `digest` of the whole plan: an unchanged plan (the hourly re-plan of most patients)
#   costs one lookup instead of a comparison per output (None: compare every output);
# - `wake`, when the plan next changes with no new event, indexed: a sweep asks the
#   database for the patients whose wake has come;
# - what the plan was made from (as-of, the patient's line, the pathway's rules) and the
#   summary the run's report and `rejected.jsonl` need of a patient not re-planned.
patient_state_table = Table(
    "patient_state", ledger_metadata,
    Column("pathway", String(200), nullable=False),
    Column("patient", String(200), nullable=False),
    Column("wake", String(40), nullable=True),     # UTC, fixed width (sorts as text); None: only an event wakes it
    Column("as_of", String(40), nullable=False),   # UTC instant of the plan
    Column("record", String(32), nullable=False),  # digest of the patient's line as planned
    Column("rules", String(64), nullable=False),   # digest of the pathway source planned under
    Column("digest", String(64), nullable=True),   # of the whole plan as recorded
    Column("summary", Text, nullable=False),       # JSON: what the run summary and rejected.jsonl need
    PrimaryKeyConstraint("pathway", "patient", name="pk_patient_state"),
    Index("ix_patient_state_wake", "pathway", "wake"),
)

# Patients with ingested event lines not yet re-planned, marked in the ingest's transaction.
dirty_table = Table(
    "patient_dirty", ledger_metadata,
    Column("pathway", String(200), primary_key=True),
    Column("patient", String(200), primary_key=True),  # keyed as the event store keys refs
)

# The letters outbox: one row per letter a channel sent, written only after the channel
# returned. A letter goes out once per channel, whatever later happens to its body
# (it may expire or be withdrawn after it was sent); `sent_at` is the run's as-of.
sends_table = Table(
    "letter_sends", ledger_metadata,
    Column("channel", String(64), primary_key=True),
    Column("output_id", String(80), primary_key=True),
    Column("sent_at", String(40), nullable=False),
    Column("run", String(64), nullable=False),
)

# The queue of letters to deliver: planning adds the due letters no channel has sent; the
# `deliver-letters` step claims rows (a lease: `claimed_by` a token, `claimed_until` a wall
# time) in one transaction, so processes sharing the ledger never take the same letter,
# then removes each row in the transaction that records its send. A letter that could
# not be rendered or sent stays here as `failed` with a reason free of patient data, and
# is tried again by the next delivery while it is due.
queue_table = Table(
    "letter_queue", ledger_metadata,
    Column("pathway", String(200), nullable=False),
    Column("letter_id", String(80), nullable=False),
    Column("patient", String(200), nullable=False),
    Column("state", String(16), nullable=False),   # queued | failed
    Column("reason", Text, nullable=True),         # why it failed, PHI-free
    Column("attempts", Integer, nullable=False, default=0),
    Column("claimed_by", String(64), nullable=True),
    Column("claimed_until", String(40), nullable=True),  # UTC ISO wall time the lease ends
    Column("run", String(64), nullable=False),     # the run that queued it
    PrimaryKeyConstraint("pathway", "letter_id", name="pk_letter_queue"),
)

# The event store (carepath.orchestrator.event_store): the events file ingested incrementally.
feed_table = Table(
    "event_feed", ledger_metadata,
    Column("pathway", String(200), primary_key=True),
    Column("path", String(4096), nullable=False),   # the file read (resolved)
    Column("offset", Integer, nullable=False),      # bytes ingested: always just after a newline
    Column("lines", Integer, nullable=False),       # lines ingested
    Column("fingerprint", String(64), nullable=False),  # SHA-256 of the ingested bytes (hex, 32 digits)
)

lines_table = Table(
    "event_lines", ledger_metadata,
    Column("pathway", String(200), nullable=False),
    Column("line", Integer, nullable=False),
    Column("patient", String(200), nullable=True),   # keyed (event_store.key); None: names no patient
    Column("event_id", String(200), nullable=True),  # keyed
    Column("raw", LargeBinary, nullable=False),
    PrimaryKeyConstraint("pathway", "line", name="pk_event_lines"),
    Index("ix_event_lines_patient", "pathway", "patient", "line"),
    Index("ix_event_lines_event_id", "pathway", "event_id"),
)

# Event ids that lines of more than one patient use (rare: a feed error, a hostile file).
# Only for them do a patient's verdicts depend on other patients' lines; kept as lines are
# ingested, so finding them costs nothing in the common case.
shared_ids_table = Table(
    "event_shared_ids", ledger_metadata,
    Column("pathway", String(200), primary_key=True),
    Column("event_id", String(200), primary_key=True),  # keyed
)

# Where each patient's line is in the patients file (carepath.orchestrator.patients_index).
file_table = Table(
    "patients_file", ledger_metadata,
    Column("pathway", String(200), primary_key=True),
    Column("path", String(4096), nullable=False),
    Column("stamp", String(200), nullable=False),
    Column("rejected", Text, nullable=False),  # JSON: the file's rejected lines (line, ref, reason; no names)
)

where_table = Table(
    "patient_lines", ledger_metadata,
    Column("pathway", String(200), nullable=False),
    Column("patient", String(200), nullable=False),
    Column("line", Integer, nullable=False),
    Column("offset", Integer, nullable=False),
    Column("length", Integer, nullable=False),
    PrimaryKeyConstraint("pathway", "patient", name="pk_patient_lines"),
)

# What on-call was told (carepath.orchestrator.notices).
facts_table = Table(
    "notified_facts", ledger_metadata,
    Column("pathway", String(200), nullable=False),
    Column("fact", String(400), nullable=False),       # kind|task|... (see Fact.key)
    Column("patient", String(200), nullable=False),
    Column("kind", String(40), nullable=False),
    Column("page_key", String(400), nullable=True),     # patient|episode|tier when this fact pages
    Column("body", Text, nullable=False),               # JSON: the announcement's payload
    Column("run", String(64), nullable=False),          # the run that recorded it
    Column("announced", Integer, nullable=False, default=0),  # 1 once the runtime announced it
    PrimaryKeyConstraint("pathway", "fact", name="pk_notified_facts"),
    Index("ix_notified_facts_patient", "pathway", "patient"),
    Index("ix_notified_facts_pending", "pathway", "announced"),
)


# What each patient contributes to worklist.html (carepath.sinks.worklist_rows).
worklist_patients_table = Table(
    "worklist_patients", ledger_metadata,
    Column("pathway", String(200), nullable=False),
    Column("patient", String(200), nullable=False),
    Column("version", String(64), nullable=True),   # the care plan's pathway_version as stored
    Column("view", Text, nullable=False),           # JSON: stage, status, flags, holds
    Column("attention", Integer, nullable=False),   # 1: status, holds or flags alone need attention
    Column("shown", Integer, nullable=False),       # care-plan and task outputs (the page's count)
    Column("open", Integer, nullable=False),        # open or overdue tasks
    Column("done", Integer, nullable=False),
    Column("cancelled", Integer, nullable=False),
    Column("closed", Integer, nullable=False),      # every task not open or overdue
    PrimaryKeyConstraint("pathway", "patient", name="pk_worklist_patients"),
    Index("ix_worklist_patients_attention", "pathway", "attention", "patient"),
)

worklist_tasks_table = Table(
    "worklist_tasks", ledger_metadata,
    Column("pathway", String(200), nullable=False),
    Column("task", String(80), nullable=False),
    Column("patient", String(200), nullable=False),
    Column("open", Integer, nullable=False),         # 1: open or overdue; 0: one of the last closed
    Column("status", String(16), nullable=False),
    Column("safety", Integer, nullable=False),       # the step is safety-critical (worklist_bands.safety_critical)
    Column("role", String(200), nullable=False),
    Column("priority", String(16), nullable=False),
    Column("rank", Integer, nullable=False),         # sinks.documents.PRIORITY_RANK, as the band's order uses it
    Column("due", String(40), nullable=True),        # UTC, fixed width (sorts as the instants do)
    Column("due_day", String(10), nullable=True),    # the due's date in the clinic's zone
    Column("earliest", String(40), nullable=False),
    Column("acknowledged", Integer, nullable=False),
    Column("closed_at", String(40), nullable=True),  # closed tasks: completion, else due, else earliest
    PrimaryKeyConstraint("pathway", "task", name="pk_worklist_tasks"),
    Index("ix_worklist_tasks_patient", "pathway", "patient"),
    # Covers the page's counts (one scan of the open rows without touching the table).
    Index("ix_worklist_tasks_open_due", "pathway", "open", "due", "due_day", "earliest", "status", "safety", "role",
          "priority"),
    Index("ix_worklist_tasks_closed", "pathway", "open", "closed_at"),
)
