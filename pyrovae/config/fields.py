"""The field machinery of the config dataclasses lives in ``pyrovae.runtime.fields`` (below
the components, whose settings dataclasses use it); re-exported here for the config layer."""

from pyrovae.runtime.fields import (  # noqa: F401
    CLASSES_NOTE, COUNT, INTEGER, MAX_CLASSES, POSITIVE, SEED, SEED_MAX, SIZE, Rule,
    _field_type, _unknown_message, check_fields, check_number, check_range, coerce,
    field_rule, section_from_dict)
