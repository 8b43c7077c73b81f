"""Where the documents of a run go: a folder on this machine or an fsspec URL that workers
on several hosts can share (`s3://…`, `gcs://…`, `memory://…` in tests).

A document is replaced in one step: written to a temporary name beside it, then moved
over the old one (a rename on a local disk; on an object store the move is its copy, which
is also all-or-nothing for a reader). A reader sees the old document or the new one, never
half of one. A `file://` URL is a local folder: it keeps the local guarantees (file modes,
an fsync, a rename on the same disk).

The cohort-wide documents and the per-patient records go to `--out DIR` unless
CAREPATH_DOCUMENTS_URL names another location (set it alike on every worker that shares
it). The letters, the ledger's default database and the scratch space stay in DIR.

Locations are an allow-list, not whatever fsspec can open: a plain path, `file://` without
a host (`file:///srv/out`), and `s3://`, `gs://`/`gcs://`, `az://`/`abfs://` when their
fsspec package is installed. Anything else (`ftp://`, `zip://`, `tar://`, `github://`,
`reference://`, `file://host/...`) is refused with the reason: such a scheme either cannot
write, writes somewhere unexpected (the working directory), or was never tried.
`memory://` holds documents in the writing process only and vanishes when it ends: the
library accepts it (tests), a run refuses it (`location_problem`). A URL must not carry
credentials (user, password, or a query string that may hold a token): they would be
printed in summaries and stored in Prefect's database with the run's parameters. Give
credentials to the fsspec package the usual way instead (AWS_ACCESS_KEY_ID / an instance
role for s3, GOOGLE_APPLICATION_CREDENTIALS for gs, AZURE_STORAGE_* for az).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import BinaryIO, Protocol, runtime_checkable
from urllib.parse import unquote, urlsplit

from carepath.sinks.base import PRIVATE, atomic_writer


@runtime_checkable
class Storage(Protocol):
    """A root that documents are written under, by relative name (`fhir/Task.ndjson`)."""

    def writer(self, name: str, mode: int = PRIVATE) -> AbstractContextManager[BinaryIO]: ...

    def exists(self, name: str) -> bool: ...

    def remove(self, name: str) -> bool: ...

    def read_bytes(self, name: str) -> bytes: ...

    def url(self, name: str) -> str: ...

    def shown(self, name: str) -> str:
        """Where a person finds the document (a path on this machine, else its URL)."""
        ...

    def local_path(self, name: str) -> Path | None:
        """The document's path when it is a file on this machine, else None."""
        ...


def _check(name: str) -> str:
    parts = name.split("/")
    if not name or name.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"document name {name!r} must be a relative path without '.' or '..' parts")
    return name


class LocalStorage:
    """A folder on this machine."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, name: str) -> Path:
        return self.root / _check(name)

    def local_path(self, name: str) -> Path | None:
        return self.path(name)

    @contextmanager
    def writer(self, name: str, mode: int = PRIVATE, *, durable: bool = True) -> Iterator[BinaryIO]:
        with atomic_writer(self.path(name), mode, durable=durable) as handle:
            yield handle

    def exists(self, name: str) -> bool:
        return self.path(name).exists()

    def remove(self, name: str) -> bool:
        """Delete the document if it is there; whether it was."""
        try:
            self.path(name).unlink()
        except FileNotFoundError:
            return False
        return True

    def read_bytes(self, name: str) -> bytes:
        return self.path(name).read_bytes()

    def url(self, name: str) -> str:
        return self.path(name).resolve().as_uri()

    def shown(self, name: str) -> str:
        """How a person is told where the document is: its path."""
        return str(self.path(name))

    def __repr__(self) -> str:
        return f"LocalStorage({str(self.root)!r})"


class FsspecStorage:
    """Any fsspec file system, by URL. File modes are the store's business (an object
    store has none); the temporary name is unique per writer, so concurrent workers never
    write into each other's temporaries."""

    def __init__(self, url: str) -> None:
        import fsspec  # only when an URL is used: a local run does not pay for the import

        self.base = url.rstrip("/")
        self.fs, self.root = fsspec.core.url_to_fs(self.base)
        self.root = self.root.rstrip("/")

    def local_path(self, name: str) -> Path | None:
        return None  # not a file on this machine

    def _full(self, name: str) -> str:
        return f"{self.root}/{_check(name)}"

    @contextmanager
    def writer(self, name: str, mode: int = PRIVATE, *, durable: bool = True) -> Iterator[BinaryIO]:
        final = self._full(name)
        folder, _, base = final.rpartition("/")
        tmp = f"{folder}/.{base}.{uuid.uuid4().hex}.tmp"
        self.fs.makedirs(folder, exist_ok=True)
        try:
            with self.fs.open(tmp, "wb") as handle:
                yield handle
            self.fs.mv(tmp, final)
        except BaseException:
            if self.fs.exists(tmp):
                self.fs.rm(tmp)
            raise

    def exists(self, name: str) -> bool:
        return bool(self.fs.exists(self._full(name)))

    def remove(self, name: str) -> bool:
        """Delete the document if it is there; whether it was."""
        if not self.fs.exists(self._full(name)):
            return False
        self.fs.rm(self._full(name))
        return True

    def clear_temporaries(self, folders: tuple[str, ...]) -> int:
        """Remove the temporaries a writer killed before its move left in these folders
        ("" is the root); a sweep calls it when it starts, before anything is written."""
        count = 0
        for folder in folders:
            where = f"{self.root}/{_check(folder)}" if folder else self.root
            for tmp in self.fs.glob(f"{where}/.*.tmp"):
                self.fs.rm(tmp)
                count += 1
        return count

    def read_bytes(self, name: str) -> bytes:
        return bytes(self.fs.cat_file(self._full(name)))

    def url(self, name: str) -> str:
        return f"{self.base}/{_check(name)}"

    def shown(self, name: str) -> str:
        return self.url(name)

    def __repr__(self) -> str:
        return f"FsspecStorage({self.base!r})"


Location = str | Path | LocalStorage | FsspecStorage  # what a sink accepts as its output location


def is_url(location: str | Path) -> bool:
    return isinstance(location, str) and "://" in location


class LocationRefused(ValueError):
    """A documents location that is not on the allow-list or carries credentials."""


REMOTE_SCHEMES = frozenset({"s3", "gs", "gcs", "az", "abfs"})
"""Object stores a documents URL may name (their fsspec package must be installed)."""

TEST_SCHEMES = frozenset({"memory"})
"""Accepted by the library (tests use it in one process), refused for a run."""


def shown_url(location: str) -> str:
    """A URL as it may be printed: without user, password, query or fragment."""
    parts = urlsplit(location)
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return f"{parts.scheme}://{host}{parts.path}" if parts.scheme else location


def url_problem(location: str, *, run: bool = True) -> str | None:
    """Why a documents URL is refused (see the module notes), or None. Never quotes a
    credential: the URL is shown as `shown_url` gives it."""
    parts = urlsplit(location)
    scheme = parts.scheme.lower()
    shown = shown_url(location)
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        return (f"{shown} carries a user name or password: remove them from the URL and give the credentials to "
                "the storage package through its own settings (e.g. AWS_ACCESS_KEY_ID, or an instance role)")
    if parts.query or parts.fragment:
        return f"{shown} has a query string or fragment (it may hold a token): remove it"
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            return f"{shown} names a host: a file:// URL is a folder on this machine, write file:///path"
        return None
    if scheme in TEST_SCHEMES and not run:
        return None
    if scheme in TEST_SCHEMES:
        return (f"{shown} keeps documents in the memory of one process: they vanish when it ends; "
                "use a folder or a shared store (s3://, gs://, az://)")
    if scheme not in REMOTE_SCHEMES:
        return (f"the scheme {scheme}:// is not one documents can be written to: use a folder, file:///path, "
                f"or one of {', '.join(sorted(f'{s}://' for s in REMOTE_SCHEMES))}")
    if not parts.netloc:
        return f"{shown} names no bucket or container"
    return None


def storage_for(location: Location) -> LocalStorage | FsspecStorage:
    """The storage for an output location: a path, a `file://` URL (both local), or an
    allowed object-store URL; ValueError for any other URL (see `url_problem`)."""
    if isinstance(location, (LocalStorage, FsspecStorage)):
        return location
    if isinstance(location, Path) or not is_url(location):
        return LocalStorage(Path(location))
    if (problem := url_problem(location, run=False)) is not None:
        raise LocationRefused(problem)
    parts = urlsplit(location)
    if parts.scheme.lower() == "file":
        return LocalStorage(Path(unquote(parts.path)))
    return FsspecStorage(location)


DOCUMENTS_ENV = "CAREPATH_DOCUMENTS_URL"


def check_documents_url(location: str) -> None:
    """LocationRefused naming the setting when a run cannot write its documents there."""
    if location and (problem := location_problem(location)) is not None:
        raise LocationRefused(f"{DOCUMENTS_ENV}: {problem}")


OWNER = ".carepath-pathway"
"""A shared documents location's marker: the id of the pathway whose documents it holds."""


def claim_location(storage: LocalStorage | FsspecStorage, pathway: str, setting: str = DOCUMENTS_ENV) -> None:
    """Mark a run's output folder or shared documents location as this pathway's, or
    LocationRefused when it holds another pathway's: two deployments sharing one `out` or
    one CAREPATH_DOCUMENTS_URL would each rewrite tasks.jsonl, the worklist and the FHIR
    exports with their own cohort. `setting` names what chose the location."""
    if storage.exists(OWNER):
        owner = storage.read_bytes(OWNER).decode("utf-8", "replace").strip()
        if owner and owner != pathway:
            where = storage.shown(OWNER).rsplit("/", 1)[0]
            raise LocationRefused(
                f"{setting}: {where} holds the documents of pathway {owner}, not {pathway}: give each pathway "
                f"its own location (e.g. {where.rstrip('/')}/{pathway})")
        if owner == pathway:
            return
    with storage.writer(OWNER) as handle:
        handle.write(pathway.encode() + b"\n")


def documents_location(out: Location) -> Location:
    """Where a run's documents go: CAREPATH_DOCUMENTS_URL when set, else the output folder."""
    return os.environ.get(DOCUMENTS_ENV) or out


def location_problem(location: str) -> str | None:
    """Why a run cannot write its documents to `location` (a scheme not allowed, a
    credential in it, its package missing), or None. Never quotes a credential."""
    if is_url(location) and (problem := url_problem(location)) is not None:
        return problem
    try:
        storage_for(location)
    except (ValueError, ImportError) as exc:
        shown = shown_url(location) if is_url(location) else location
        reason = str(exc).replace(location, shown)
        return (f"{shown} is not a location documents can be written to ({reason}); use a folder, a file:// "
                f"URL or an object-store URL whose package is installed (s3:// needs s3fs, gs:// gcsfs, "
                f"az:// adlfs)")
    return None
