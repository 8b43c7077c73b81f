"""`carepath serve`: the clinic's live worklist on the ledger, for signed-in staff.

`access` owns accounts, sessions and the append-only audit table (a small SQLite database
beside the ledger); `passwords` the argon2id hashes; `site` what the pages show and the
actions staff take, as a library free of the web and of Prefect (an action is an event
recorded like `carepath emit`'s, then the patient re-planned through the orchestrator's
one-patient sequence); `app` the Starlette application over them.
"""
