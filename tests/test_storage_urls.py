"""Documents URLs are an allow-list, and a credential in one is never printed or stored."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from carepath.sinks.storage import LocalStorage, LocationRefused, location_problem, shown_url, storage_for

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("url, words", [
    ("ftp://files.clinic.example/out", "ftp:// is not one"),
    ("zip://out.zip", "zip:// is not one"),
    ("tar://archive.tar", "tar:// is not one"),
    ("dbfs://workspace/out", "dbfs:// is not one"),
    ("github://org:repo@main/", "user name or password"),
    ("reference://", "reference:// is not one"),
    ("http://example.org/out", "http:// is not one"),
    ("file://fileserver/share/out", "names a host"),
    ("memory://carepath/out", "vanish"),
    ("s3://", "names no bucket"),
    ("s3://carepath:hunter2secret@bucket/out", "user name or password"),
    ("s3://bucket/out?X-Amz-Signature=abc123token", "query string"),
])
def test_a_scheme_not_allowed_or_a_credential_is_refused_in_words(url: str, words: str) -> None:
    problem = location_problem(url)
    assert problem is not None and words in problem
    assert "hunter2secret" not in problem and "abc123token" not in problem


def test_the_library_refuses_the_same_but_keeps_memory_for_tests(tmp_path: Path) -> None:
    with pytest.raises(LocationRefused, match="ftp://"):
        storage_for("ftp://files.clinic.example/out")
    with pytest.raises(LocationRefused, match="names a host"):
        storage_for("file://fileserver/share/out")
    assert storage_for("memory://carepath-url-test/out").shown("x.json") == "memory://carepath-url-test/out/x.json"
    local = storage_for(f"file://{tmp_path}/out")
    assert isinstance(local, LocalStorage) and local.root == tmp_path / "out"
    assert location_problem(str(tmp_path / "out")) is None and location_problem(f"file://{tmp_path}") is None


def test_an_object_store_whose_package_is_missing_is_named_with_the_package() -> None:
    pytest.importorskip("carepath")
    try:
        import s3fs  # noqa: F401
    except ImportError:
        problem = location_problem("s3://clinic-bucket/carepath")
        assert problem is not None and "s3fs" in problem
    else:  # pragma: no cover - not in the lock
        assert location_problem("s3://clinic-bucket/carepath") is None


def test_shown_url_drops_user_password_query_and_fragment() -> None:
    assert shown_url("s3://u:p@bucket:9000/out?token=t#f") == "s3://bucket:9000/out"


def test_run_refuses_a_password_in_the_documents_url_without_printing_it(tmp_path: Path) -> None:
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "carepath.cli.main", "run", str(ROOT / "pathways" / "ketamine-iv.yaml"),
                           "--patients", str(ROOT / "examples" / "patients.jsonl"),
                           "--events", str(ROOT / "examples" / "events.jsonl"), "--out", str(tmp_path / "o")],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "CAREPATH_DOCUMENTS_URL": "s3://ops:Wint3r-Pass@bucket/out"})
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "CAREPATH_DOCUMENTS_URL" in proc.stderr and "user name or password" in proc.stderr
    assert "Wint3r-Pass" not in proc.stderr + proc.stdout
    assert time.monotonic() - started < 10 and not (tmp_path / "o").exists()
