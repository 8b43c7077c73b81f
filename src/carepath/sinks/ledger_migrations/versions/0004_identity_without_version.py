"""Identity without the version: stored outputs and sends re-keyed to version-free ids.

Task and letter ids used to hash the pathway version; they now hash (pathway, patient,
step or letter, occurrence key) only, so work two versions share keeps its id. This
revision carries an existing ledger over without sending anything again:

- each stored letter is re-keyed: its old id is recomputed from what the row holds
  (pathway, the body's `pathway_version`, patient, `letter`, key `event:<trigger>`) and,
  when that reproduces the stored id exactly, the row and its sends (`letter_sends`) move
  to the new id. A letter sent under two versions' ids (a migration made
  with the old ids) becomes one letter with its first send;
- each stored task likewise, trying the keys a task can have that the row and the event
  store can rebuild: `event:<trigger>`, `<field>:<value>` for each field of the
  triggering event's data (per-occurrence steps), `<stage>:<trigger>:<n>` and
  `<stage>:<trigger>:slot:<n>` for recurring and calendar work (the stage is in the row's
  `source`), and `conflict:`/`overdue:` of another re-keyed task. A task whose key cannot
  be rebuilt keeps its row until the next sweep re-plans the patient, which retires it
  and records the same work under its new id; completions that name its old id still
  close it (the planner recognises version-hashed ids);
- `pathway_migrations` is added: each applied migration (from, to, step map, reason), so
  later sweeps still recognise ids of steps a migration renamed; and
  `migration_withdrawals`: the open work a migration withdrew, with the reason;
- every patient is marked for re-planning (their summaries hold the old ids) and every
  pathway's documents are rewritten once.

Only rows whose old id is reproduced exactly are touched; nothing is guessed. The hash is
written out here, not imported, so this revision keeps meaning what it meant.
"""

from __future__ import annotations

import hashlib
import re

import orjson
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_SOURCE = re.compile(r"^stage:([^:]+):(recurring|series)$")


def _hashed(prefix: str, parts: tuple[str, ...]) -> str:
    return f"{prefix}-{hashlib.sha256(chr(0x1f).join(parts).encode()).hexdigest()[:20]}"


def _digest(body: dict) -> str:
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]


def _migrations_table(metadata: sa.MetaData) -> sa.Table:
    return sa.Table(
        "pathway_migrations", metadata,
        sa.Column("pathway", sa.String(200), primary_key=True),
        sa.Column("from_version", sa.String(64), primary_key=True),
        sa.Column("to_version", sa.String(64), primary_key=True),
        sa.Column("steps", sa.Text, nullable=False),   # JSON: old step → [new steps]
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("run", sa.String(64), nullable=False),
    )


def _withdrawals_table(metadata: sa.MetaData) -> sa.Table:
    return sa.Table(
        "migration_withdrawals", metadata,
        sa.Column("pathway", sa.String(200), primary_key=True),
        sa.Column("task", sa.String(80), primary_key=True),
        sa.Column("patient", sa.String(200), nullable=False),
        sa.Column("step", sa.String(200), nullable=False),
        sa.Column("from_version", sa.String(64), nullable=False),
        sa.Column("to_version", sa.String(64), nullable=False),
        sa.Column("why", sa.Text, nullable=False),
        sa.Column("run", sa.String(64), nullable=False),
    )


def _trigger_data(bind: sa.Connection, pathway: str, trigger: str) -> dict:
    """The data of the triggering event, from the event store (revision 0002), if held."""
    row = bind.execute(sa.text("SELECT raw FROM event_lines WHERE pathway = :p AND event_id = :e LIMIT 1"),
                       {"p": pathway, "e": trigger}).first()
    if row is None:
        return {}
    try:
        data = orjson.loads(row[0]).get("data")
    except (orjson.JSONDecodeError, AttributeError):
        return {}
    return data if isinstance(data, dict) else {}


def _patient_rows(bind: sa.Connection):  # noqa: ANN202 - yields lists of rows
    """The stored tasks and letters, one patient (of one pathway) at a time, streamed."""
    query = sa.text("SELECT pathway, id, kind, patient, body FROM outputs WHERE kind IN ('task', 'letter') "
                    "ORDER BY pathway, patient, id")
    block: list = []
    # Options on the statement: on the connection they would stay set for every later statement.
    for row in bind.execute(query.execution_options(stream_results=True, yield_per=2000)):
        if block and (row.pathway, row.patient) != (block[0].pathway, block[0].patient):
            yield block
            block = []
        block.append(row)
    if block:
        yield block


def _new_ids(bind: sa.Connection) -> dict[tuple[str, str], str]:
    """(pathway, old id) → new id, for every task and letter whose old id is reproduced."""
    has_events = sa.inspect(bind).has_table("event_lines")
    moved: dict[tuple[str, str], str] = {}
    for rows in _patient_rows(bind):
        moved.update(_patient_ids(bind, rows, has_events))
    return moved


def _patient_ids(bind: sa.Connection, rows: list, has_events: bool) -> dict[tuple[str, str], str]:
    """One patient's re-keyed ids."""
    bodies = [orjson.loads(r.body) for r in rows]
    # Recurring and calendar work is numbered per (step, trigger): occurrence n of k.
    group: dict[tuple[str, str], int] = {}
    for r, body in zip(rows, bodies):
        if r.kind == "task":
            key = (str(body.get("step")), str(body.get("trigger")))
            group[key] = group.get(key, 0) + 1
    moved: dict[tuple[str, str], str] = {}
    pending: list[tuple[str, str, str, str, str, str]] = []  # embedded keys, once their parent is known
    for r, body in zip(rows, bodies):
        pathway, old, kind, patient = r.pathway, r.id, r.kind, r.patient
        version, trigger = body.get("pathway_version"), body.get("trigger")
        name = body.get("letter") if kind == "letter" else body.get("step")
        if not all(isinstance(v, str) for v in (version, trigger, name)):
            continue
        prefix = old[0]

        def candidates():  # noqa: ANN202 - the keys this output may have had, cheapest first
            yield f"event:{trigger}"
            source = _SOURCE.match(str(body.get("source", ""))) if kind == "task" else None
            if source is not None:  # stage:<name>:recurring → <name>:<trigger>:<n>; :series → …:slot:<n>
                slot = ":slot" if source.group(2) == "series" else ""
                yield from (f"{source.group(1)}:{trigger}{slot}:{n}"
                            for n in range(1, group[(name, trigger)] + 2))
            elif kind == "task" and has_events:  # per-occurrence steps: <field>:<value> of the event
                yield from (f"{field}:{value}" for field, value in _trigger_data(bind, pathway, trigger).items()
                            if isinstance(value, (str, int)))

        for key in candidates():
            if _hashed(prefix, (pathway, version, patient, name, key)) == old:
                moved[(pathway, old)] = _hashed(prefix, (pathway, patient, name, key))
                break
        else:
            pending.append((pathway, old, prefix, version, patient, name))
    # Escalations and window conflicts embed their parent task's id in their key: once the
    # parent is re-keyed, theirs can be (a chain at most a few deep).
    parents = [r.id for r in rows if r.kind == "task"]
    for _round in range(3):
        progress = False
        for item in list(pending):
            pathway, old, prefix, version, patient, name = item
            for parent in parents:
                parent_new = moved.get((pathway, parent))
                if parent_new is None:
                    continue
                for kind_of in ("conflict", "overdue"):
                    if _hashed(prefix, (pathway, version, patient, name, f"{kind_of}:{parent}")) == old:
                        moved[(pathway, old)] = _hashed(prefix, (pathway, patient, name, f"{kind_of}:{parent_new}"))
                        break
                if (pathway, old) in moved:
                    pending.remove(item)
                    progress = True
                    break
        if not progress:
            break
    return moved


def _rekey_outputs(bind: sa.Connection, moved: dict[tuple[str, str], str]) -> None:
    for (pathway, old), new in moved.items():
        row = bind.execute(sa.text("SELECT body, retired FROM outputs WHERE pathway = :p AND id = :i"),
                           {"p": pathway, "i": old}).first()
        if row is None:
            continue
        taken = bind.execute(sa.text("SELECT retired FROM outputs WHERE pathway = :p AND id = :i"),
                             {"p": pathway, "i": new}).first()
        if taken is not None:
            # Two versions' ids of one output (a migration made with the old ids): keep the
            # current row; the next re-plan rewrites it whole.
            if taken[0] and not row[1]:
                bind.execute(sa.text("DELETE FROM outputs WHERE pathway = :p AND id = :i"), {"p": pathway, "i": new})
            else:
                bind.execute(sa.text("DELETE FROM outputs WHERE pathway = :p AND id = :i"), {"p": pathway, "i": old})
                continue
        body = orjson.loads(row[0])
        body["id"] = new
        bind.execute(sa.text("UPDATE outputs SET id = :n, body = :b, digest = :d WHERE pathway = :p AND id = :i"),
                     {"n": new, "b": orjson.dumps(body).decode(), "d": _digest(body), "p": pathway, "i": old})


def _rekey_keyed(bind: sa.Connection, table: str, channel: str, moved: dict[tuple[str, str], str]) -> None:
    """Move rows of `table` keyed by (`channel`, output_id) to the new ids; of two rows that
    become one, the first send (`letter_sends`) is kept."""
    olds: dict[str, str] = {}
    for (_, old), new in moved.items():
        olds[old] = new
    rows = bind.execute(sa.text(f"SELECT {channel}, output_id FROM {table}")).all()  # noqa: S608 - fixed names
    for key, old in rows:
        new = olds.get(old)
        if new is None:
            continue
        clash = bind.execute(sa.text(f"SELECT 1 FROM {table} WHERE {channel} = :c AND output_id = :n"),  # noqa: S608
                             {"c": key, "n": new}).first()
        if clash is None:
            bind.execute(sa.text(f"UPDATE {table} SET output_id = :n WHERE {channel} = :c AND output_id = :o"),  # noqa: S608
                         {"n": new, "c": key, "o": old})
            continue
        if table == "letter_sends":
            bind.execute(sa.text("UPDATE letter_sends SET sent_at = (SELECT MIN(sent_at) FROM letter_sends "
                                 "WHERE channel = :c AND output_id IN (:o, :n)) WHERE channel = :c AND output_id = :n"),
                         {"c": key, "o": old, "n": new})
        bind.execute(sa.text(f"DELETE FROM {table} WHERE {channel} = :c AND output_id = :o"),  # noqa: S608
                     {"c": key, "o": old})


def upgrade() -> None:
    bind = op.get_bind()
    found = set(sa.inspect(bind).get_table_names())
    if "pathway_migrations" not in found:
        _migrations_table(sa.MetaData()).create(bind)
    if "migration_withdrawals" not in found:
        _withdrawals_table(sa.MetaData()).create(bind)
    if "outputs" not in found:
        return
    moved = _new_ids(bind)
    _rekey_outputs(bind, moved)
    if "letter_sends" in found:
        _rekey_keyed(bind, "letter_sends", "channel", moved)
    if "patient_wake" in found:  # summaries name the old ids: every patient is re-planned once
        bind.execute(sa.text("UPDATE patient_wake SET rules = ''"))
    if "patient_state" in found:
        bind.execute(sa.text("DELETE FROM patient_state"))
    if "pathway_generations" in found:  # documents show ids: each is rewritten once
        bind.execute(sa.text("UPDATE pathway_generations SET value = value + 1"))


def downgrade() -> None:
    raise RuntimeError("revision 0004 (identity without the version) cannot be undone: the old ids hashed a "
                       "version the new ones do not hold; restore the ledger from a backup instead")
