"""The core event catalogue: types the engine understands, with their typed data.

A pathway may declare further types (`events:`); it may not redefine these.
"""

from __future__ import annotations

from carepath.model.pathway import DataField, FieldType

CORE_EVENTS: dict[str, dict[str, DataField]] = {
    "enrolled": {},
    "screening_recorded": {
        "trd_trials": DataField(type=FieldType.INTEGER),
        "contraindications": DataField(type=FieldType.TEXT_LIST, optional=True),
        "cautions": DataField(type=FieldType.TEXT_LIST, optional=True),
    },
    "assessment_recorded": {
        "instrument": DataField(type=FieldType.TEXT, one_of=("phq9",)),
        "items": DataField(type=FieldType.INTEGER_LIST),
        "total": DataField(type=FieldType.INTEGER, optional=True),
    },
    "vitals_recorded": {
        "systolic": DataField(type=FieldType.INTEGER),
        "diastolic": DataField(type=FieldType.INTEGER),
        "phase": DataField(type=FieldType.TEXT, one_of=("pre_dose", "post_dose")),
    },
    "session_scheduled": {
        "session": DataField(type=FieldType.TEXT),
        "start": DataField(type=FieldType.DATETIME),
    },
    "session_completed": {"session": DataField(type=FieldType.TEXT)},
    "session_missed": {"session": DataField(type=FieldType.TEXT)},
    "session_cancelled": {"session": DataField(type=FieldType.TEXT)},
    "task_completed": {"task": DataField(type=FieldType.TEXT)},
    # Seen and owned, not done: the task stays open, its escalation ladder stops.
    "task_acknowledged": {
        "task": DataField(type=FieldType.TEXT),
        "by": DataField(type=FieldType.TEXT),
    },
    "decision_recorded": {
        "task": DataField(type=FieldType.TEXT),
        "decision": DataField(type=FieldType.TEXT),
    },
    "discharged": {},
    # Derived by the records reader from a PHQ-9 line it rejected because the stated total
    # disagrees with the items: the record stays rejected, but the answers are the
    # patient's, so pathways can still act on them (an item-9 answer above 0).
    "assessment_rejected": {
        "instrument": DataField(type=FieldType.TEXT, one_of=("phq9",)),
        "items": DataField(type=FieldType.INTEGER_LIST),
        "item9": DataField(type=FieldType.INTEGER),
        "stated_total": DataField(type=FieldType.INTEGER),
    },
}
