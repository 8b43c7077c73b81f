"""The ledger's schema under Alembic: a fresh ledger is at the newest revision and has
exactly the tables the code queries; a ledger written by a carepath from before the
migrations upgrades with its rows and sends no letter twice; processes opening a fresh
ledger together all succeed; a current ledger costs one query to open."""

from __future__ import annotations

import itertools
import multiprocessing
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import pytest
import sqlalchemy
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from carepath.orchestrator import sequence
from carepath.orchestrator.spec import RunSpec
from carepath.sinks import ledger_migrations
from carepath.sinks.ledger import Ledger, LedgerProblem, check_ledger, ledger_metadata

ROOT = Path(__file__).resolve().parents[1]
PATHWAY = str(ROOT / "pathways" / "ketamine-iv.yaml")
PATIENTS = ROOT / "examples" / "patients.jsonl"
EVENTS = ROOT / "examples" / "events.jsonl"
AS_OF = datetime.fromisoformat("2026-03-03T17:00:00+00:00")  # three letters due, four expired

# The ledger as the first carepath with one wrote it (its SQLAlchemy tables, created with
# create_all): outputs keyed by id alone, letters recorded only as deliveries of the
# `letters` sink, a global generation in `meta`, document states in `snapshots`.
FIRST_SCHEMA = """
CREATE TABLE deliveries (sink VARCHAR(64) NOT NULL, output_id VARCHAR(80) NOT NULL, digest VARCHAR(64) NOT NULL,
    run VARCHAR(64) NOT NULL, PRIMARY KEY (sink, output_id));
CREATE TABLE meta ("key" VARCHAR(64) NOT NULL, value INTEGER NOT NULL, PRIMARY KEY ("key"));
CREATE TABLE outputs (id VARCHAR(80) NOT NULL, kind VARCHAR(16) NOT NULL, patient VARCHAR(200) NOT NULL,
    pathway VARCHAR(200) NOT NULL, digest VARCHAR(64) NOT NULL, body TEXT NOT NULL, retired INTEGER NOT NULL,
    first_run VARCHAR(64) NOT NULL, updated_run VARCHAR(64) NOT NULL, PRIMARY KEY (id));
CREATE INDEX ix_outputs_patient ON outputs (patient);
CREATE TABLE pathway_versions (pathway VARCHAR(200) NOT NULL, version VARCHAR(64) NOT NULL,
    digest VARCHAR(64) NOT NULL, source TEXT NOT NULL, PRIMARY KEY (pathway, version));
CREATE TABLE pins (patient VARCHAR(200) NOT NULL, pathway VARCHAR(200) NOT NULL, version VARCHAR(64) NOT NULL,
    run VARCHAR(64) NOT NULL, PRIMARY KEY (patient, pathway));
CREATE TABLE snapshots (sink VARCHAR(64) NOT NULL, state VARCHAR(200) NOT NULL, run VARCHAR(64) NOT NULL,
    PRIMARY KEY (sink));
"""

# The last carepath without migrations: every table of today, plus `meta` holding the
# flag of its hand-written upgrade (letters already adopted into the outbox).
LAST_SCHEMA = """
CREATE TABLE deliveries (sink VARCHAR(64) NOT NULL, output_id VARCHAR(80) NOT NULL, digest VARCHAR(64) NOT NULL,
    run VARCHAR(64) NOT NULL, PRIMARY KEY (sink, output_id));
CREATE TABLE document_snapshots (pathway VARCHAR(200) NOT NULL, sink VARCHAR(64) NOT NULL,
    state VARCHAR(200) NOT NULL, run VARCHAR(64) NOT NULL, PRIMARY KEY (pathway, sink));
CREATE TABLE letter_sends (channel VARCHAR(64) NOT NULL, output_id VARCHAR(80) NOT NULL,
    sent_at VARCHAR(40) NOT NULL, run VARCHAR(64) NOT NULL, PRIMARY KEY (channel, output_id));
CREATE TABLE meta ("key" VARCHAR(64) NOT NULL, value INTEGER NOT NULL, PRIMARY KEY ("key"));
CREATE TABLE outputs (id VARCHAR(80) NOT NULL, kind VARCHAR(16) NOT NULL, patient VARCHAR(200) NOT NULL,
    pathway VARCHAR(200) NOT NULL, digest VARCHAR(64) NOT NULL, body TEXT NOT NULL, retired INTEGER NOT NULL,
    first_run VARCHAR(64) NOT NULL, updated_run VARCHAR(64) NOT NULL,
    CONSTRAINT pk_outputs PRIMARY KEY (pathway, id));
CREATE INDEX ix_outputs_pathway_patient ON outputs (pathway, patient);
CREATE TABLE pathway_generations (pathway VARCHAR(200) NOT NULL, value INTEGER NOT NULL, PRIMARY KEY (pathway));
CREATE TABLE pathway_versions (pathway VARCHAR(200) NOT NULL, version VARCHAR(64) NOT NULL,
    digest VARCHAR(64) NOT NULL, source TEXT NOT NULL, PRIMARY KEY (pathway, version));
CREATE TABLE patient_state (pathway VARCHAR(200) NOT NULL, patient VARCHAR(200) NOT NULL,
    digest VARCHAR(64) NOT NULL, run VARCHAR(64) NOT NULL, PRIMARY KEY (pathway, patient));
CREATE TABLE pins (patient VARCHAR(200) NOT NULL, pathway VARCHAR(200) NOT NULL, version VARCHAR(64) NOT NULL,
    run VARCHAR(64) NOT NULL, PRIMARY KEY (patient, pathway));
"""

OUTPUT_COLUMNS = "id, kind, patient, pathway, digest, body, retired, first_run, updated_run"


def url_of(path: Path) -> str:
    return f"sqlite:///{path}"


_DATABASES = itertools.count()  # PostgreSQL database names, unique on the module's server


def _postgres_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    """A throwaway PostgreSQL server on 127.0.0.1 for the ledger's other database: its URL
    without a database name. Skipped, saying so, where PostgreSQL is not installed."""
    bindir = _postgres_bin()
    if bindir is None:
        pytest.skip("PostgreSQL is not installed (no initdb): the PostgreSQL ledger is not tested here")
    base = Path(tempfile.mkdtemp(prefix="carepath-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb and postgres refuse to run as root
        shutil.chown(base, "nobody")
        as_user = ["runuser", "-u", "nobody", "--"]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    data = base / "data"
    subprocess.run([*as_user, str(bindir / "initdb"), "-D", str(data), "-U", "carepath", "--auth=trust"],
                   check=True, capture_output=True, timeout=120)
    subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-w", "-l", str(base / "log"), "-o",
                    f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off", "start"],
                   check=True, capture_output=True, timeout=120)
    try:
        yield f"postgresql+psycopg://carepath@127.0.0.1:{port}"
    finally:
        subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True, timeout=120)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)])
def new_ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[str], str]:
    """Makes the URL of an empty database for a ledger, by name, on either backend."""
    if request.param == "sqlite":
        return lambda name: url_of(tmp_path / f"{name}.sqlite")
    server = request.getfixturevalue("postgres")

    def create(name: str) -> str:
        database = f"ledger_{name}_{next(_DATABASES)}"
        admin = sqlalchemy.create_engine(f"{server}/postgres", isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                conn.execute(sqlalchemy.text(f'CREATE DATABASE "{database}"'))
        finally:
            admin.dispose()
        return f"{server}/{database}"
    return create


def sweep(out: Path, url: str, run: str):  # noqa: ANN201 - the sequence's summary
    return sequence.sweep(RunSpec.resolve(PATHWAY, out, AS_OF, run, ledger_url=url, pdf=False), PATIENTS, EVENTS,
                          shard_size=1, export=True, bundle=True)


def rows(url: str, query: str) -> set[tuple]:
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as conn:
            return {tuple(r) for r in conn.execute(sqlalchemy.text(query))}
    finally:
        engine.dispose()


def schema_differences(url: str) -> list:
    """What separates the database's schema from ledger.py's tables: Alembic's comparison
    (tables, columns, types, nullability, indexes) and each table's primary key, which
    Alembic does not compare."""
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"version_table": ledger_migrations.VERSION_TABLE})
            found = list(compare_metadata(context, ledger_metadata))
            inspector = sqlalchemy.inspect(conn)
            for table in ledger_metadata.sorted_tables:
                key = sorted(inspector.get_pk_constraint(table.name)["constrained_columns"])
                if key != sorted(c.name for c in table.primary_key.columns):
                    found.append(("primary key", table.name, key))
            return found
    finally:
        engine.dispose()


def revision_of(url: str) -> str | None:
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as conn:
            return ledger_migrations.current(conn)
    finally:
        engine.dispose()


def test_revisions_are_listed_in_the_order_of_their_files() -> None:
    script = ScriptDirectory(str(Path(ledger_migrations.__file__).parent))
    chain = [s.revision for s in script.walk_revisions()][::-1]  # walk_revisions goes newest first
    assert tuple(chain) == ledger_migrations.REVISIONS
    assert script.get_current_head() == ledger_migrations.HEAD


def test_a_fresh_ledger_is_at_head_with_exactly_the_tables_the_code_queries(
        new_ledger_url: Callable[[str], str]) -> None:
    url = new_ledger_url("fresh")
    Ledger(url).close()
    assert revision_of(url) == ledger_migrations.HEAD
    assert schema_differences(url) == []


def _legacy_ledger(url: str, schema: str, fresh_url: str) -> None:
    """A pre-migrations ledger holding what a first run recorded in the fresh ledger at
    `fresh_url`, as that carepath version recorded it."""
    source, target = sqlalchemy.create_engine(fresh_url), sqlalchemy.create_engine(url)
    try:
        with source.connect() as old, target.begin() as conn:
            for statement in filter(str.strip, schema.split(";")):
                conn.execute(sqlalchemy.text(statement))
            tables = set(sqlalchemy.inspect(conn).get_table_names())

            def copy(query: str, table: str, columns: str) -> None:
                found = [dict(r._mapping) for r in old.execute(sqlalchemy.text(query))]
                if found:
                    names = ", ".join(f":{c.strip()}" for c in columns.split(","))
                    conn.execute(sqlalchemy.text(f"INSERT INTO {table} ({columns}) VALUES ({names})"), found)

            copy(f"SELECT {OUTPUT_COLUMNS} FROM outputs", "outputs", OUTPUT_COLUMNS)
            copy("SELECT patient, pathway, version, run FROM pins", "pins", "patient, pathway, version, run")
            copy("SELECT pathway, version, digest, source FROM pathway_versions", "pathway_versions",
                 "pathway, version, digest, source")
            if "letter_sends" in tables:  # the outbox existed and had adopted older letters: its flag says so
                copy("SELECT channel, output_id, sent_at, run FROM letter_sends", "letter_sends",
                     "channel, output_id, sent_at, run")
                copy("SELECT pathway, patient, digest, 'run-1' AS run FROM patient_state WHERE digest IS NOT NULL",
                     "patient_state", "pathway, patient, digest, run")
                copy("SELECT pathway, value FROM pathway_generations", "pathway_generations", "pathway, value")
                copy("SELECT pathway, sink, state, run FROM document_snapshots", "document_snapshots",
                     "pathway, sink, state, run")
                conn.execute(sqlalchemy.text("INSERT INTO meta VALUES ('generation', 5), ('letter_sends_adopted', 1)"))
            else:  # before the outbox, a written letter was a delivery of the `letters` sink
                copy("SELECT 'letters' AS sink, o.id AS output_id, o.digest, 'run-1' AS run FROM letter_sends s "
                     "JOIN outputs o ON o.id = s.output_id", "deliveries", "sink, output_id, digest, run")
                conn.execute(sqlalchemy.text("INSERT INTO meta VALUES ('generation', 5)"))
                conn.execute(sqlalchemy.text(
                    "INSERT INTO snapshots VALUES ('tasks.jsonl', '5|2026-03-03T17:00:00+00:00', 'run-1')"))
    finally:
        source.dispose()
        target.dispose()


@pytest.mark.parametrize("schema", [FIRST_SCHEMA, LAST_SCHEMA], ids=["first-version", "last-version"])
def test_a_ledger_from_before_migrations_upgrades_with_its_rows_and_sends_no_letter_twice(
        tmp_path: Path, new_ledger_url: Callable[[str], str], schema: str) -> None:
    out, fresh = tmp_path / "out", url_of(tmp_path / "first-run.sqlite")
    first = sweep(out, fresh, "run-1")
    assert first.letters_written == 3
    sent = rows(fresh, "SELECT output_id FROM letter_sends")
    outputs = rows(fresh, f"SELECT {OUTPUT_COLUMNS} FROM outputs")
    pins = rows(fresh, "SELECT * FROM pins")
    legacy = new_ledger_url("legacy")
    _legacy_ledger(legacy, schema, fresh)
    assert revision_of(legacy) is None

    Ledger(legacy).close()  # the upgrade

    assert revision_of(legacy) == ledger_migrations.HEAD
    assert schema_differences(legacy) == []
    assert rows(legacy, f"SELECT {OUTPUT_COLUMNS} FROM outputs") == outputs
    assert rows(legacy, "SELECT * FROM pins") == pins
    assert rows(legacy, "SELECT output_id FROM letter_sends") == sent
    engine = sqlalchemy.create_engine(legacy)
    try:
        assert not {"meta", "snapshots", "outputs_unscoped"} & set(sqlalchemy.inspect(engine).get_table_names())
    finally:
        engine.dispose()
    if schema is LAST_SCHEMA:  # sends keep their times
        assert rows(legacy, "SELECT * FROM letter_sends") == rows(fresh, "SELECT * FROM letter_sends")

    for letter in (out / "letters").rglob("*"):
        if letter.is_file():
            letter.unlink()
    again = sweep(out, legacy, "after-upgrade")
    assert again.letters_written == 0
    assert not [f for f in (out / "letters").rglob("*") if f.is_file()]
    assert (again.recorded.new, again.recorded.changed) == (0, 0)


def _open(url: str, start: multiprocessing.synchronize.Barrier) -> int:  # type: ignore[name-defined]
    """In a child process: open the ledger at the same moment as the others; how many
    times this process ran the revisions."""
    from alembic import command

    ran = 0
    real = command.upgrade

    def counted(*args, **kwargs) -> None:  # noqa: ANN002, ANN003
        nonlocal ran
        ran += 1
        real(*args, **kwargs)

    command.upgrade = counted
    start.wait()
    Ledger(url).close()
    return ran


def test_processes_opening_a_fresh_ledger_at_the_same_moment_all_succeed_and_one_upgrades(
        new_ledger_url: Callable[[str], str]) -> None:
    url = new_ledger_url("shared")
    context = multiprocessing.get_context("fork")
    processes = 4
    start = context.Manager().Barrier(processes)
    with context.Pool(processes) as pool:
        ran = pool.starmap(_open, [(url, start)] * processes, chunksize=1)
    assert sum(ran) == 1, ran
    assert revision_of(url) == ledger_migrations.HEAD
    assert schema_differences(url) == []


def test_opening_a_current_ledger_runs_no_migration_and_costs_one_query(
        new_ledger_url: Callable[[str], str], monkeypatch: pytest.MonkeyPatch) -> None:
    from alembic import command

    url = new_ledger_url("current")
    Ledger(url).close()

    def refused(*_args, **_kwargs) -> None:  # noqa: ANN002, ANN003
        raise AssertionError("migrations ran on a ledger already at head")

    monkeypatch.setattr(command, "upgrade", refused)
    statements: list[str] = []

    def seen(_conn, _cursor, statement, *_args) -> None:  # noqa: ANN001, ANN002
        statements.append(statement)

    sqlalchemy.event.listen(sqlalchemy.Engine, "before_cursor_execute", seen)
    try:
        Ledger(url).close()
    finally:
        sqlalchemy.event.remove(sqlalchemy.Engine, "before_cursor_execute", seen)
    # (A new PostgreSQL engine first asks the server its version and settings.)
    ours = [s for s in statements if not s.lower().startswith(("select pg_catalog.version", "select current_schema",
                                                                  "show "))]
    assert ours == [f"SELECT version_num FROM {ledger_migrations.VERSION_TABLE}"]


def test_a_ledger_written_by_a_newer_carepath_is_refused_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    url = url_of(path)
    Ledger(url).close()
    engine = sqlalchemy.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sqlalchemy.text(f"UPDATE {ledger_migrations.VERSION_TABLE} SET version_num = '9999'"))
    engine.dispose()
    for attempt in (lambda: check_ledger(url, tmp_path), lambda: Ledger(url)):
        with pytest.raises(LedgerProblem) as refused:
            attempt()
        assert str(path) in str(refused.value) and "9999" in str(refused.value) and "newer carepath" in str(
            refused.value)
    assert revision_of(url) == "9999"  # left as it was


def test_the_revisions_ship_in_the_package() -> None:
    # setuptools ships the .py files of discovered packages (pyproject's packages.find):
    # without versions/__init__.py an installed carepath would have no revisions at all.
    from setuptools import find_packages

    packages = find_packages(where=str(ROOT / "src"))
    assert {"carepath.sinks.ledger_migrations", "carepath.sinks.ledger_migrations.versions"} <= set(packages)
    versions = Path(ledger_migrations.__file__).parent / "versions"
    assert {p.name.split("_")[0] for p in versions.glob("[0-9]*.py")} == set(ledger_migrations.REVISIONS)


def _to_revision(url: str, action: str, revision: str) -> None:
    """Alembic's own upgrade or downgrade of the ledger to `revision`, as carepath runs them."""
    from alembic import command
    from alembic.config import Config

    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as conn:
            config = Config()
            config.set_main_option("script_location", str(Path(ledger_migrations.__file__).parent).replace("%", "%%"))
            config.attributes["connection"] = conn
            getattr(command, action)(config, revision)
            conn.commit()
    finally:
        engine.dispose()


def _shape(url: str) -> dict[str, tuple]:
    """Each table's columns (name, nullable), primary key and indexed columns."""
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as conn:
            inspector = sqlalchemy.inspect(conn)
            return {t: (sorted((c["name"], c["nullable"]) for c in inspector.get_columns(t)),
                        sorted(inspector.get_pk_constraint(t)["constrained_columns"]),
                        sorted(tuple(i["column_names"]) for i in inspector.get_indexes(t)))
                    for t in inspector.get_table_names()}
    finally:
        engine.dispose()


STATE = "SELECT pathway, patient, wake, as_of, record, rules, digest, summary FROM patient_state"


def test_a_ledger_at_0005_upgrades_with_each_patients_state_and_sweeps_the_same(
        new_ledger_url: Callable[[str], str], tmp_path: Path) -> None:
    """Revision 0006 merges the plan digests (0005's `patient_state`) into the wake rows
    (`patient_wake`): a ledger at 0005 holding both keeps every patient's state, and its
    next sweep re-plans and writes exactly what a ledger that never was at 0005 does."""
    url, control = new_ledger_url("at-0005"), new_ledger_url("control")
    sweep(tmp_path / "a", url, "first")
    sweep(tmp_path / "b", control, "first")
    state = rows(url, STATE)
    assert state and all(r[6] for r in state) and any(r[2] for r in state)  # digests and wakes were stored

    _to_revision(url, "downgrade", "0005")
    reference = new_ledger_url("reference")
    _to_revision(reference, "upgrade", "0005")
    assert revision_of(url) == "0005" and _shape(url) == _shape(reference)
    assert rows(url, "SELECT pathway, patient, wake, as_of, record, rules, summary FROM patient_wake") == {
        (*r[:6], r[7]) for r in state}
    assert rows(url, "SELECT pathway, patient, digest FROM patient_state") == {(r[0], r[1], r[6]) for r in state}

    Ledger(url).close()  # the upgrade
    assert revision_of(url) == ledger_migrations.HEAD and schema_differences(url) == []
    assert rows(url, STATE) == state

    later = AS_OF.replace(day=AS_OF.day + 3)  # wakes have come: some patients are re-planned by their wake
    after = [sequence.sweep(RunSpec.resolve(PATHWAY, tmp_path / name, later, "later", ledger_url=ledger, pdf=False),
                            PATIENTS, EVENTS, shard_size=1).as_json() for name, ledger in (("a", url), ("b", control))]
    assert after[0] == after[1] and after[0]["replanned"] > 0
    assert rows(url, STATE) == rows(control, STATE)


def test_a_database_the_ledger_does_not_support_is_refused_naming_the_supported_ones(tmp_path: Path) -> None:
    from carepath.sinks.ledger import UnsupportedDatabase, url_problem

    url = "mysql://carepath@db.example/carepath"
    with pytest.raises(UnsupportedDatabase) as refused:
        Ledger(url)
    assert isinstance(refused.value, LedgerProblem)
    for message in (str(refused.value), url_problem(url)):
        assert message and "mysql" in message and "sqlite and postgresql" in message
    with pytest.raises(UnsupportedDatabase):
        check_ledger(url, tmp_path)


def test_incremental_sweeps_work_on_both_databases(new_ledger_url: Callable[[str], str], tmp_path: Path) -> None:
    """The event store and wake index on each backend: appended lines (one reusing another
    patient's event id) are ingested, only their patients are re-planned, and a line that
    reuses an id is refused as the readers refuse it; a second sweep re-plans nobody."""
    import json

    events = tmp_path / "events.jsonl"
    shutil.copy(EVENTS, events)
    url = new_ledger_url("incremental")
    out = tmp_path / "out"

    def run(as_of: datetime, name: str) -> dict:
        spec = RunSpec.resolve(PATHWAY, out, as_of, name, ledger_url=url, pdf=False)
        return sequence.sweep(spec, PATIENTS, events, shard_size=1, export=True, bundle=True).as_json()

    first = run(AS_OF, "first")
    earlier = json.loads(events.read_text().splitlines()[0])
    others = sorted({json.loads(line)["patient"] for line in Path(PATIENTS).read_text().splitlines()}
                    - {earlier["patient"]})
    with events.open("a") as handle:
        handle.write(json.dumps({**earlier, "patient": others[0]}) + "\n")
    later = AS_OF.replace(minute=5)
    second = run(later, "second")
    assert second["replanned"] == 1 and second["patients"] == first["patients"]
    rejected = [json.loads(line) for line in (out / "rejected.jsonl").read_text().splitlines()]
    assert any(r["id"] == earlier["id"] and "already used on line 1" in r["reason"] for r in rejected)
    assert run(later, "third")["replanned"] == 0
    # The worklist from the stored worklist rows (SQL on this backend) is the page a pass
    # over every output writes.
    from carepath.sinks.worklist import Worklist

    spec = RunSpec.resolve(PATHWAY, out, later, "check", ledger_url=url, pdf=False)
    ledger = Ledger(url)
    try:
        page = Worklist(tmp_path / "pass", spec.compiled, later)
        page.write(ledger.current(spec.compiled.id, page.kinds))
    finally:
        ledger.close()
    assert (out / "worklist.html").read_bytes() == (tmp_path / "pass" / "worklist.html").read_bytes()
