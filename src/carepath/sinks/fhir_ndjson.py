"""`DIR/fhir/<Type>.ndjson`: the resources of `fhir/bundle.json`, one per line, one file
per resource type, as a FHIR Bulk Data export delivers them (`CarePlan.ndjson`,
`Task.ndjson`, `CommunicationRequest.ndjson`), and `DIR/fhir/manifest.json` listing them
like a Bulk Data `$export` completion response (transactionTime, output type/url/count).

Same resources, same ids as the bundle (`FhirBundle` converts them): a consumer that
loads a cohort line by line never has to parse one document of hundreds of megabytes.
Streamed one patient at a time into the three files; the manifest is written last, so a
manifest's counts describe files that are complete. Its `url`s are full URLs on a shared
store and names relative to the manifest in a local folder.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime

import orjson

from carepath.compile.compiled import CompiledPathway
from carepath.sinks.base import Output, OutputKind
from carepath.sinks.documents import Instants, PatientOutputs, patient_groups, require_aware
from carepath.sinks.fhir import FhirBundle, _BundleFeed
from carepath.sinks.storage import FsspecStorage, LocalStorage, Location, storage_for

RESOURCE_TYPES = ("CarePlan", "Task", "CommunicationRequest")
MANIFEST = "fhir/manifest.json"


def ndjson_name(resource_type: str) -> str:
    return f"fhir/{resource_type}.ndjson"


class _Files:
    """The three NDJSON files being written, and how many resources each holds."""

    def __init__(self, storage: LocalStorage | FsspecStorage, stack: ExitStack) -> None:
        self.handles = {t: stack.enter_context(storage.writer(ndjson_name(t))) for t in RESOURCE_TYPES}
        self.counts = dict.fromkeys(RESOURCE_TYPES, 0)

    def add(self, entries: list[dict[str, object]]) -> None:
        # A patient's entries come as one CarePlan, then Tasks, then CommunicationRequests:
        # each type's lines are written in one call.
        lines: dict[str, list[bytes]] = {}
        for entry in entries:
            resource = entry["resource"]
            kind = resource["resourceType"]  # type: ignore[index]
            lines.setdefault(kind, []).append(orjson.dumps(resource))
        for kind, found in lines.items():
            self.handles[kind].write(b"\n".join(found) + b"\n")
            self.counts[kind] += len(found)


class FhirNdjson:
    """The Bulk-Data-style export of one pathway's current plan as of one instant."""

    name = "fhir/ndjson"
    kinds = frozenset({OutputKind.PATIENT, OutputKind.TASK, OutputKind.LETTER})

    def __init__(self, out: Location, compiled: CompiledPathway, as_of: datetime) -> None:
        self.storage = storage_for(out)
        self.compiled = compiled
        self.as_of = require_aware(as_of)
        # The conversion is the bundle's: one mapping, two layouts.
        self._convert = FhirBundle(self.storage, compiled, as_of)

    def present(self) -> bool:
        """Whether the export is there to be left alone (the manifest is written last)."""
        return self.storage.exists(MANIFEST) and all(self.storage.exists(ndjson_name(t)) for t in RESOURCE_TYPES)

    def write(self, outputs: Iterable[Output]) -> int:
        """Outputs grouped by patient in ref order (the ledger's order), as for the bundle."""
        written = 0
        instants = Instants()
        with ExitStack() as stack:
            files = _Files(self.storage, stack)
            for group in patient_groups(outputs):
                entries = self._convert.group_entries(group, instants)
                written += len(entries)
                files.add(entries)
        self.finish(files.counts)
        return written

    def _url(self, resource_type: str) -> str:
        """On a shared store, the file's full URL (readers on other hosts); in a local
        folder, its name beside the manifest, so that the same input gives the same bytes
        in any folder and the folder can be moved or copied whole."""
        if isinstance(self.storage, LocalStorage):
            return f"{resource_type}.ndjson"
        return self.storage.url(ndjson_name(resource_type))

    def finish(self, counts: dict[str, int]) -> None:
        """The manifest, once the files it lists are complete."""
        manifest = {
            "transactionTime": self.as_of.isoformat(),
            "request": f"urn:carepath:pathway:{self.compiled.id}|{self.compiled.version}",
            "requiresAccessToken": False,
            "output": [{"type": t, "url": self._url(t), "count": counts[t]} for t in RESOURCE_TYPES],
            "error": [],
        }
        with self.storage.writer(MANIFEST) as handle:
            handle.write(orjson.dumps(manifest, option=orjson.OPT_INDENT_2) + b"\n")


class FhirExport:
    """`fhir/bundle.json` and the NDJSON export in one pass over the outputs (the run's
    FHIR document step): the ledger is read and each resource converted once, not twice.
    Named as the bundle, so a ledger's record of the bundle's last state still applies."""

    name = FhirBundle.name
    kinds = FhirBundle.kinds

    def __init__(self, out: Location, compiled: CompiledPathway, as_of: datetime) -> None:
        self.storage = storage_for(out)
        self.bundle = FhirBundle(self.storage, compiled, as_of)
        self.ndjson = FhirNdjson(self.storage, compiled, as_of)
        self.written = 0

    def present(self) -> bool:
        return self.storage.exists(self.bundle.name) and self.ndjson.present()

    def write(self, outputs: Iterable[Output]) -> int:
        with self.feed() as feed:
            for group in patient_groups(outputs):
                feed.add(group)
        return self.written

    @contextmanager
    def feed(self) -> Iterator[_BundleFeed]:
        """Bundle and export open for one pass (`add` one patient's outputs at a time,
        patients ascending); the manifest is written once both are complete."""
        with ExitStack() as stack:
            files = _Files(self.storage, stack)
            with self.bundle.feed(tee=files.add) as feed:
                yield feed
        self.ndjson.finish(files.counts)
        self.written = self.bundle.written


# Resources per NDJSON part: a part stays a file a loader reads in one go (a few hundred
# MB at most), however large the cohort.
PART_SIZE = 100_000


def part_name(folder: str, resource_type: str, number: int) -> str:
    return f"{folder}/{resource_type}.{number:04d}.ndjson"


class _Parts:
    """NDJSON files of at most `size` resources per type, opened as they fill up."""

    def __init__(self, storage: LocalStorage | FsspecStorage, stack: ExitStack, folder: str, size: int) -> None:
        self.storage, self.stack, self.folder, self.size = storage, stack, folder, size
        self.parts: list[tuple[str, str, int]] = []  # (type, name, count), in the order opened
        self.current: dict[str, tuple[object, int, int]] = {}  # type → (handle, part number, count)

    def add(self, entries: list[dict[str, object]]) -> None:
        for entry in entries:
            resource = entry["resource"]
            kind = resource["resourceType"]  # type: ignore[index]
            handle, number, count = self.current.get(kind, (None, 0, self.size))
            if count >= self.size:
                number += 1
                handle = self.stack.enter_context(self.storage.writer(part_name(self.folder, kind, number)))
                count = 0
            handle.write(orjson.dumps(resource) + b"\n")  # type: ignore[union-attr]
            self.current[kind] = (handle, number, count + 1)

    def listing(self) -> list[tuple[str, str, int]]:
        """(type, file name, count) of every part, by type then number."""
        found = []
        for kind in RESOURCE_TYPES:
            if kind in self.current:
                _, last, count = self.current[kind]
                found += [(kind, part_name(self.folder, kind, n), self.size if n < last else count)
                          for n in range(1, last + 1)]
        return found


class FhirParts:
    """FHIR Bulk Data NDJSON in parts (`fhir/Task.0001.ndjson`, …) and the manifest listing
    them (`fhir/manifest.json`, like a Bulk Data `$export` completion response): an
    export's whole cohort, or with `only` a sweep's change feed (the resources it created
    or changed, under `changes/<sweep-stamp>/`). The manifest is written last, so its
    counts describe files that are complete."""

    kinds = frozenset({OutputKind.PATIENT, OutputKind.TASK, OutputKind.LETTER})

    def __init__(self, out: Location, compiled: CompiledPathway, as_of: datetime, *, folder: str = "fhir",
                 only: Callable[[str], bool] | None = None, since: str | None = None,
                 part_size: int | None = None) -> None:
        self.storage = storage_for(out)
        self.compiled, self.as_of, self.folder, self.only = compiled, require_aware(as_of), folder, only
        self.since, self.part_size = since, part_size or PART_SIZE
        self.name = f"{folder}/manifest.json"
        self._convert = FhirBundle(self.storage, compiled, as_of)
        self.written = 0

    def present(self) -> bool:
        """The whole export's manifest is there: one a `_since` export wrote lists only a
        part of the cohort, so a whole export over it must rewrite the files."""
        return self.whole_export()

    def whole_export(self) -> bool:
        """The folder holds a whole-cohort export (a manifest without `_since`)."""
        if not self.storage.exists(self.name):
            return False
        try:
            request = orjson.loads(self.storage.read_bytes(self.name)).get("request", "")
        except (orjson.JSONDecodeError, AttributeError):
            return False  # unreadable: rewritten by the next whole export
        return "?_since=" not in str(request)

    @contextmanager
    def feed(self) -> Iterator[_PartsFeed]:
        with ExitStack() as stack:
            parts = _Parts(self.storage, stack, self.folder, self.part_size)
            feed = _PartsFeed(self, parts)
            yield feed
        self.written = feed.count
        self._manifest(parts.listing())

    def _url(self, name: str) -> str:
        if isinstance(self.storage, LocalStorage):
            return name.rsplit("/", 1)[-1]  # beside the manifest: the folder can move whole
        return self.storage.url(name)

    def _manifest(self, parts: list[tuple[str, str, int]]) -> None:
        manifest: dict[str, object] = {
            "transactionTime": self.as_of.isoformat(),
            "request": f"urn:carepath:pathway:{self.compiled.id}|{self.compiled.version}"
                       + (f"?_since={self.since}" if self.since else ""),
            "requiresAccessToken": False,
            "output": [{"type": t, "url": self._url(name), "count": n} for t, name, n in parts],
            "error": [],
        }
        with self.storage.writer(self.name) as handle:
            handle.write(orjson.dumps(manifest, option=orjson.OPT_INDENT_2) + b"\n")


class _PartsFeed:
    def __init__(self, sink: FhirParts, parts: _Parts) -> None:
        self.sink, self.parts = sink, parts
        self.instants = Instants()
        self.count = 0

    def add(self, group: PatientOutputs) -> None:
        entries = self.sink._convert.group_entries(group, self.instants)
        only = self.sink.only
        if only is not None:
            # The entries come as the CarePlan, then the tasks, then the letters.
            ids = [o.id for o in (*group.plans, *group.tasks, *group.letters)]
            entries = [e for e, i in zip(entries, ids) if only(i)]
        self.count += len(entries)
        self.parts.add(entries)
