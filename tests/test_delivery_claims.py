"""Exactly once across processes that share a ledger: a letter is claimed in the ledger
(a lease, one conditional update) before it is sent, so two delivery processes draining
one queue at the same moment — on SQLite and on PostgreSQL — send each letter once,
through a real SMTP server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from carepath.orchestrator import delivery, sequence
from carepath.orchestrator.spec import RunSpec
from carepath.sinks.ledger import Ledger, sends_table
from carepath.synth import generate
from test_delivery import Inbox, free_port
from test_ledger_migrations import new_ledger_url, postgres  # noqa: F401 - fixtures

ROOT = Path(__file__).resolve().parents[1]
PATHWAY = str(ROOT / "pathways" / "ketamine-iv.yaml")
AS_OF = datetime.fromisoformat("2026-02-20T12:00:00+00:00")
DEMO_AS_OF = "2026-03-05T17:00:00+00:00"

DELIVER = textwrap.dedent("""
    import sys, time
    from datetime import datetime
    from pathlib import Path
    from carepath.orchestrator import delivery
    from carepath.orchestrator.spec import RunSpec
    from carepath.sinks.ledger import Ledger

    pathway, out, url, patients, as_of, go, name = sys.argv[1:]
    delivery.BATCH = 3  # small claims, so the two processes interleave
    spec = RunSpec.resolve(pathway, out, datetime.fromisoformat(as_of), name, ledger_url=url, pdf=False)
    ledger = Ledger(url)
    while not Path(go).exists():
        time.sleep(0.01)
    done = delivery.deliver_letters(spec, patients, ledger)
    print(done.sent, done.failed, done.queued)
""")


class SlowInbox(Inbox):
    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: ANN001
        await asyncio.sleep(0.005)  # the other process claims meanwhile
        return await super().handle_DATA(server, session, envelope)


@pytest.mark.slow  # two `carepath` processes and an SMTP server
def test_two_processes_draining_one_queue_send_each_letter_once(new_ledger_url, tmp_path: Path,  # noqa: F811
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    cohort = tmp_path / "cohort"
    generate(cohort, patients=30, seed=11, as_of=AS_OF)
    url = new_ledger_url("claims")
    out = tmp_path / "out"
    monkeypatch.setattr(sequence, "deliver_letters", lambda *a, **k: delivery.Delivered())  # plan and queue only
    sequence.sweep(RunSpec.resolve(PATHWAY, out, AS_OF, "plan", ledger_url=url, pdf=False),
                   cohort / "patients.jsonl", cohort / "events.jsonl")
    ledger = Ledger(url)
    queued = ledger.queued("ketamine-iv")["queued"]
    assert queued >= 20

    inbox = SlowInbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    env = {**os.environ, "CAREPATH_LETTER_CHANNEL": "email", "CAREPATH_SMTP_HOST": "127.0.0.1",
           "CAREPATH_SMTP_PORT": str(port), "CAREPATH_SMTP_SECURITY": "none",
           "CAREPATH_SMTP_FROM": "letters@clinic.example"}
    go = tmp_path / "go"
    try:
        procs = [subprocess.Popen([sys.executable, "-c", DELIVER, PATHWAY, str(out), url,
                                   str(cohort / "patients.jsonl"), AS_OF.isoformat(), str(go), f"deliver-{n}"],
                                  env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for n in (1, 2)]
        time.sleep(3)  # both have opened the ledger and wait
        go.touch()
        results = [p.communicate(timeout=300) for p in procs]
    finally:
        controller.stop()
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in results]
    sent = [int(stdout.split()[0]) for stdout, _ in results]
    assert sum(sent) == queued and all(n > 0 for n in sent)  # both took part, neither took a letter twice
    ids = Counter(m["Message-ID"] for m in inbox.messages)
    assert ids and max(ids.values()) == 1
    with ledger.engine.connect() as conn:
        recorded = conn.execute(sends_table.select()).fetchall()
    assert len(recorded) == queued == len({r.output_id for r in recorded})
    assert ledger.queued("ketamine-iv") == {}
    ledger.close()


def test_a_claim_left_by_a_killed_process_is_taken_over_after_its_lease(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    ledger = Ledger(url)
    from carepath.sinks.base import Output, OutputKind

    letters = [Output(f"l-{n}", OutputKind.LETTER, "p-1", {"status": "due"}) for n in range(3)]
    assert ledger.queue_letters("pw", letters, "run-1") == 3
    assert ledger.queue_letters("pw", letters, "run-2") == 0  # queued once
    now, later = "2026-03-01T10:00:00+00:00", "2026-03-01T10:15:00+00:00"
    assert len(ledger.claim_letters("pw", "killed", now, later, 10)) == 3
    assert ledger.claim_letters("pw", "other", "2026-03-01T10:05:00+00:00", "2026-03-01T10:20:00+00:00", 10) == []
    taken = ledger.claim_letters("pw", "other", "2026-03-01T10:16:00+00:00", "2026-03-01T10:31:00+00:00", 10)
    assert sorted(i for i, _ in taken) == ["l-0", "l-1", "l-2"]
    ledger.settle_sent("pw", "email", ["l-0"], now, "run-2")
    ledger.settle_failed("pw", "other", {"l-1": "the mail server refused it for good (550)"})
    ledger.release("pw", "other")
    assert ledger.queued("pw") == {"queued": 1, "failed": 1}
    assert ledger.failed_letters("pw") == [("p-1", "l-1", "the mail server refused it for good (550)")]
    assert [o.id for o in ledger.unsent(letters)] == ["l-1", "l-2"]
    ledger.close()


def test_a_claim_of_a_dead_process_on_this_host_is_released_at_once(tmp_path: Path) -> None:
    """A run killed outright (SIGKILL) leaves its claims: the next delivery on the same host
    sees their process is gone and takes them without waiting for the lease."""
    import subprocess as sp

    from carepath.sinks.base import Output, OutputKind

    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    ledger.queue_letters("pw", [Output("l-1", OutputKind.LETTER, "p-1", {})], "run-1")
    gone = sp.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    dead = f"{delivery._host()}:{gone.pid}:feedface"
    alive_elsewhere = f"other-host:{os.getpid()}:feedface"
    assert ledger.claim_letters("pw", dead, "2026-03-01T10:00:00+00:00", "2999-01-01T00:00:00+00:00", 10)
    delivery._release_the_dead(ledger, "pw")
    assert ledger.claim_letters("pw", alive_elsewhere, "2026-03-01T10:01:00+00:00", "2999-01-01T00:00:00+00:00", 10)
    delivery._release_the_dead(ledger, "pw")  # another host's claim is left to its lease
    assert ledger.claim_letters("pw", "third", "2026-03-01T10:02:00+00:00", "2999-01-01T00:00:00+00:00", 10) == []
    ledger.close()


FIRST_RUN = textwrap.dedent("""
    import sys, time
    from datetime import datetime
    from pathlib import Path
    from carepath.orchestrator import sequence
    from carepath.orchestrator.spec import RunSpec

    pathway, out, url, patients, events, as_of, go, name = sys.argv[1:]
    spec = RunSpec.resolve(pathway, out, datetime.fromisoformat(as_of), name, ledger_url=url, pdf=False)
    while not Path(go).exists():
        time.sleep(0.005)
    summary = sequence.sweep(spec, patients, events, refuse_unused_input=True)
    print(summary.letters_written)
""")


def test_concurrent_first_runs_into_one_new_ledger_all_succeed_and_send_once(new_ledger_url,  # noqa: F811
                                                                             tmp_path: Path) -> None:
    """Several hosts' first sweeps of one pathway into one new shared ledger, each with its
    own `out`, started at the same moment: each reads "not recorded yet" and records the
    same outputs, which failed all but one on the unique key. Now every run succeeds and
    the cohort's due letters are written once in all."""
    cohort = ROOT / "examples" / "demo"
    url = new_ledger_url("first")
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", FIRST_RUN, PATHWAY, str(tmp_path / f"out-{n}"), url,
                               str(cohort / "patients.jsonl"), str(cohort / "events.jsonl"), DEMO_AS_OF,
                               str(go), f"first-{n}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for n in range(4)]
    time.sleep(4)  # all have started and wait
    go.touch()
    results = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, [err[-1500:] for _, err in results]
    ledger = Ledger(url)
    try:
        with ledger.engine.connect() as conn:
            recorded = conn.execute(sends_table.select()).fetchall()
    finally:
        ledger.close()
    assert recorded and len(recorded) == len({r.output_id for r in recorded})
    assert sum(int(stdout.split()[-1]) for stdout, _ in results) == len(recorded)
