"""Serve carepath's deployments from this process instead of running a worker:

    .venv/bin/python flows/serve.py PATHWAY --patients FILE --events FILE --out DIR [PATHWAY ...]

Registers, per pathway, the hourly sweep (cron in the clinic's zone) and the
event-triggered re-plan, then runs their flow runs here until stopped (Ctrl-C). Needs a
Prefect server (PREFECT_API_URL); see docs/operations.md. The deployments are built by
`carepath.runtime.deployments`; prefect.yaml declares the same pair for workers.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pathways", nargs="+", metavar="PATHWAY")
    parser.add_argument("--patients", required=True)
    parser.add_argument("--events", required=True)
    parser.add_argument("--out", required=True, help="outputs go to OUT/<pathway id>")
    args = parser.parse_args(argv)

    from prefect import serve

    from carepath import api
    from carepath.runtime.deployments import deployments_for

    deployments = []
    for pathway in args.pathways:
        pathway_id = api.load_pathway(pathway).id
        deployments += deployments_for(pathway, args.patients, args.events, f"{args.out}/{pathway_id}")
    serve(*deployments)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
