"""Every `when:` is checked against the context its trigger provides."""

from __future__ import annotations

from jinja2 import TemplateSyntaxError

from carepath.check.context import CheckContext
from carepath.check.expressions import check_condition
from carepath.model.context import Kind, Shape, condition_context, data_shape
from carepath.source.loader import KeyPath


def _common_data(ctx: CheckContext, triggers: list[str] | None) -> Shape | None:
    """Data fields every trigger type has with the same kind: only those are safe to read."""
    if triggers is None:
        return None
    fields = [ctx.event_fields(t) for t in triggers]
    if any(f is None for f in fields):
        return Kind.ANY  # an unknown event type is reported once, by the reference check
    shapes = [data_shape(f) for f in fields if f is not None]
    if not shapes:
        return {}
    common = dict(shapes[0])
    for other in shapes[1:]:
        common = {k: v for k, v in common.items() if other.get(k) == v}
    return common


def check_conditions(ctx: CheckContext) -> None:
    p = ctx.pathway
    for i, rule in enumerate(p.rules):
        if rule.when is not None:
            _one(ctx, rule.when, _common_data(ctx, rule.on), ("rules", i, "when"))
    for name, stage in p.stages.items():
        for k, transition in enumerate(stage.transitions):
            if transition.when is not None:
                _one(ctx, transition.when, _common_data(ctx, transition.on),
                     ("stages", name, "transitions", k, "when"))


def _one(ctx: CheckContext, source: str, data: Shape | None, path: KeyPath) -> None:
    context = condition_context(ctx.pathway, data)
    for finding in check_condition(source, context):
        ctx.report(path, finding.code, f"{finding.message} in {source.strip()!r}", finding.hint)


__all__ = ["check_conditions", "TemplateSyntaxError"]
