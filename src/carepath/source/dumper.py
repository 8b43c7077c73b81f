"""YAML output that our loader reads back to the same values.

PyYAML's dumper quotes by YAML 1.1 rules; our loader resolves by YAML 1.2, so a string
such as `0o17` would come back as a number. The dumper here shares the loader's
resolvers, so it quotes exactly the strings the loader would otherwise re-type.
"""

from __future__ import annotations

import yaml

from carepath.source.loader import _StrictLoader


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.yaml_implicit_resolvers = {k: list(v) for k, v in _StrictLoader.yaml_implicit_resolvers.items()}


def dump_yaml(data: object) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, default_flow_style=False)
