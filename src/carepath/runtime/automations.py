"""The clinic's on-call automations, reviewed in Git by name, made ready for Prefect.

`automations/on-call.yaml` names each notification block as `block:<type slug>/<name>`
(e.g. `block:pagerduty-webhook/on-call-prescriber`), so a reviewer reads who is paged;
Prefect's `prefect automation create --from-file` wants the blocks' ids. `resolve` looks
each name up on the Prefect server (PREFECT_API_URL) and writes the same automations with
the ids, for that command. Every automation is validated as Prefect's `AutomationCore`
before anything is written.
"""

from __future__ import annotations

import json
from pathlib import Path

from carepath.runtime.server import ServiceUnavailable
from carepath.source.loader import load_source

BLOCK_PREFIX = "block:"


class AutomationsProblem(Exception):
    """The file cannot be made into automations (the message says what to fix)."""


def block_refs(automations: list[dict]) -> list[str]:
    """The `block:<type>/<name>` references, in file order, each once."""
    refs: list[str] = []
    for automation in automations:
        for key in ("actions", "actions_on_trigger", "actions_on_resolve"):
            for action in automation.get(key) or []:
                ref = action.get("block_document_id")
                if isinstance(ref, str) and ref.startswith(BLOCK_PREFIX) and ref not in refs:
                    refs.append(ref)
    return refs


def read(path: Path) -> list[dict]:
    loaded = load_source(path)  # the pathways' safe loader: no duplicate keys, no alias bombs
    if loaded.diagnostics:
        raise AutomationsProblem("; ".join(d.render() for d in loaded.diagnostics))
    data = loaded.data
    automations = data.get("automations") if isinstance(data, dict) else data
    if not isinstance(automations, list) or not all(isinstance(a, dict) for a in automations):
        raise AutomationsProblem(f"{path}: expected a list of automations under `automations:`")
    return automations


def substitute(automations: list[dict], ids: dict[str, str]) -> list[dict]:
    """The automations with each block reference replaced by its id; each one validated."""
    from prefect.events.schemas.automations import AutomationCore

    def swap(value: object) -> object:
        if isinstance(value, dict):
            return {k: swap(v) for k, v in value.items()}
        if isinstance(value, list):
            return [swap(v) for v in value]
        return ids.get(value, value) if isinstance(value, str) else value

    out = [swap(a) for a in automations]
    for automation in out:
        try:
            AutomationCore.model_validate(automation)
        except ValueError as exc:
            raise AutomationsProblem(f"automation {automation.get('name')!r} is not valid for Prefect: {exc}") from None
    return out  # type: ignore[return-value]


def block_ids(refs: list[str]) -> dict[str, str]:
    """Each `block:<type>/<name>`'s id on the Prefect server; a missing one is named."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    ids: dict[str, str] = {}
    missing: list[str] = []
    with get_client(sync_client=True) as client:
        for ref in refs:
            slug, _, name = ref.removeprefix(BLOCK_PREFIX).partition("/")
            try:
                ids[ref] = str(client.read_block_document_by_name(name, slug).id)
            except ObjectNotFound:
                missing.append(f"{slug}/{name}")
    if missing:
        raise AutomationsProblem(
            "no such notification block on the Prefect server: " + ", ".join(missing)
            + " (create each, e.g. `prefect block create <type>`, or see docs/operations.md)")
    return ids


def resolve(path: Path, out: Path) -> int:
    """Write `out` (JSON, which `prefect automation create --from-file` reads) from the
    automations file `path`; the number of automations. ServiceUnavailable when no
    Prefect server is named or it does not answer."""
    from prefect.settings import PREFECT_API_URL

    automations = read(path)
    refs = block_refs(automations)
    substitute(automations, {ref: "00000000-0000-0000-0000-000000000000" for ref in refs})  # the file's own mistakes first
    api_url = PREFECT_API_URL.value()
    if not api_url:
        raise ServiceUnavailable("the Prefect server", "PREFECT_API_URL is not set: set it to the server whose "
                                 "notification blocks and automations the clinic uses")
    try:
        ids = block_ids(refs)
    except (OSError, TimeoutError) as exc:
        raise ServiceUnavailable(f"the Prefect server at {api_url}", f"{type(exc).__name__}: {exc}. "
                                 "Start it or correct PREFECT_API_URL") from None
    except Exception as exc:
        import httpx

        if isinstance(exc, httpx.TransportError):
            raise ServiceUnavailable(f"the Prefect server at {api_url}", f"{type(exc).__name__}: {exc}. "
                                     "Start it or correct PREFECT_API_URL") from None
        raise
    resolved = substitute(automations, ids)
    out.write_text(json.dumps({"automations": resolved}, indent=2) + "\n")
    return len(resolved)
