"""The settings a deployed run needs, checked at its first step and named when missing.

A deployment's parameters come from prefect.yaml, where a clinic points them at its
data (or at Prefect variables, `{{ prefect.variables.<name> }}`), and its environment
from the deployment's `job_variables.env`, else the worker's. Prefect fills a missing
variable with an empty string and leaves an unknown `{{ $ENV }}` placeholder as written:
either would otherwise surface much later as an unreadable file or a run that does the
wrong thing, so the first step refuses it with the parameter's or setting's name.
No Prefect here: the runtime passes the values in.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path


class SettingMissing(ValueError):
    """A setting a run needs is missing or unusable; the message names it and where it is set."""


_WHERE = ("set it in the deployment's parameters (prefect.yaml or the Prefect UI), or create the Prefect "
          "variable it names; see docs/operations.md, 'Settings per deployment'")


def deployment_variable(pathway: str, parameter: str) -> str:
    """The Prefect variable prefect.yaml fills a pathway's parameter from:
    `carepath_<pathway file's stem, '-' as '_'>_<parameter>`."""
    return f"carepath_{Path(pathway).stem.replace('-', '_')}_{parameter}"


def check_parameters(parameters: Mapping[str, str | None], *, files: tuple[str, ...] = ()) -> None:
    """SettingMissing for the first parameter that is empty, still a template, or (for
    those named in `files`) names no file. The message names the Prefect variable that
    prefect.yaml fills it from (derived from the `pathway` parameter)."""
    pathway = str(parameters.get("pathway") or "")
    for name, value in parameters.items():
        variable = (f"; prefect.yaml fills it from the Prefect variable {deployment_variable(pathway, name)} "
                    f"(`prefect variable set {deployment_variable(pathway, name)} VALUE`, then deploy again)"
                    if pathway and name != "pathway" else "")
        if value is None or not str(value).strip():
            raise SettingMissing(f"the run's parameter '{name}' is empty (a Prefect variable that does not "
                                 f"exist is read as empty){variable}: {_WHERE}")
        if "{{" in str(value):
            raise SettingMissing(f"the run's parameter '{name}' is the template {value!r}, which Prefect did not "
                                 f"fill in at deploy time (an environment variable unset when `prefect deploy` "
                                 f"ran?): {_WHERE}")
        if name in files and not Path(value).is_file():
            raise SettingMissing(f"the run's parameter '{name}' names {value}, which is not a file here "
                                 f"(working directory {Path.cwd()}; relative paths are read from the folder the "
                                 f"deployment's pull step sets, CAREPATH_HOME at deploy time){variable}: {_WHERE}")


def check_environment(env: Mapping[str, str], names: tuple[str, ...]) -> None:
    """SettingMissing for an environment setting left as an unfilled template."""
    for name in names:
        if "{{" in env.get(name, ""):
            raise SettingMissing(f"the setting {name} is the template {env[name]!r}, which Prefect did not fill in: "
                                 "check the deployment's job_variables.env and the Prefect variable it names")
