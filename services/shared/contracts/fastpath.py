"""A quicker walk through a marshmallow schema, for messages that are well formed. Imports
marshmallow only.

The relay checks every outgoing payload and every consumer checks every incoming envelope
and payload. Most of `Schema.load`'s cost is its per-call machinery (error store, a closure
and a validator wrapper per field), not the checks. `FastSchema` runs the same field
objects and validators in a plain loop, and answers None whenever it is not certain:
any validation error, a schema with hooks, options it does not model. Callers then run
marshmallow itself, which stays the authority and the source of every error message.
For the values it does accept, the result is exactly marshmallow's (a test compares them).
"""

from __future__ import annotations

import math
from typing import Any, Callable

from marshmallow import EXCLUDE, RAISE, Schema, ValidationError, fields
from marshmallow.utils import missing

# How a few field classes load and dump their canonical JSON type, as marshmallow itself
# would (see String/Integer/Float/Boolean in marshmallow.fields): value -> value. Used
# only for exactly these classes and exactly these Python types; anything else goes
# through the field's own deserialize/serialize.
_IDENTITY_TYPES: dict[type[fields.Field], type] = {
    fields.String: str,
    fields.Integer: int,
    fields.Float: float,
    fields.Boolean: bool,
}


def _identity_type(field: fields.Field, *, dumping: bool) -> type | None:
    kind = _IDENTITY_TYPES.get(type(field))
    if kind is None or getattr(field, "pre_load", None) or getattr(field, "post_load", None):
        return None
    if dumping and getattr(field, "as_string", False):
        return None
    if isinstance(field, fields.Boolean) and (field.truthy is not fields.Boolean.truthy
                                              or field.falsy is not fields.Boolean.falsy):
        return None
    return kind


class FastSchema:
    """`load` and `dump` of one schema instance; `load` returns None to mean "ask marshmallow"."""

    def __init__(self, schema: Schema):
        self.schema = schema
        self.enabled = (
            not any(schema._hooks.values())
            and not schema.many
            and not schema.partial
            and schema.unknown in (RAISE, EXCLUDE)
            and schema.dict_class is dict
        )
        self.raise_unknown = schema.unknown == RAISE
        self._load_plan: list[tuple[str, str, fields.Field, type | None, tuple[Callable[[Any], Any], ...]]] = []
        for name, field in schema.load_fields.items():
            key = field.data_key if field.data_key is not None else name
            attr = field.attribute or name
            if "." in attr:
                self.enabled = False  # nested attribute paths: leave them to marshmallow
            self._load_plan.append((key, attr, field, _identity_type(field, dumping=False), tuple(field.validators)))
        self._known = frozenset(key for key, *_ in self._load_plan)
        self._dump_plan: list[tuple[str, str, fields.Field, type | None]] = []
        for name, field in schema.dump_fields.items():
            source = field.attribute or name
            if "." in source:
                self.enabled = False
            key = field.data_key if field.data_key is not None else name
            self._dump_plan.append((name, key, field, _identity_type(field, dumping=True)))

    def load(self, data: Any) -> dict[str, Any] | None:
        if not self.enabled or type(data) is not dict:
            return None
        if self.raise_unknown and not self._known.issuperset(data):
            return None
        out: dict[str, Any] = {}
        try:
            for key, attr, field, kind, validators in self._load_plan:
                raw = data.get(key, missing)
                if kind is not None and type(raw) is kind and (kind is not float or math.isfinite(raw)):
                    for validate in validators:
                        validate(raw)
                    value = raw
                else:
                    value = field.deserialize(raw, key, data)
                if value is not missing:
                    out[attr] = value
        except ValidationError:
            return None
        return out

    def dump(self, obj: dict[str, Any]) -> dict[str, Any]:
        """`schema.dump(obj)` for a dict `obj` (what `load` returned)."""
        if not self.enabled or type(obj) is not dict:
            return dict(self.schema.dump(obj))
        out: dict[str, Any] = {}
        for name, key, field, kind in self._dump_plan:
            value = obj.get(field.attribute or name, missing)
            if kind is not None and (value is None or type(value) is kind):
                out[key] = value
                continue
            value = field.serialize(name, obj, accessor=self.schema.get_attribute)
            if value is not missing:
                out[key] = value
        return out
