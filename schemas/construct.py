"""Build a contract model from values already known to be valid, without validating them again.

Validation costs microseconds per model; the hot paths (the decoder's fast path for inbound events, the
core's own decisions) already hold values that satisfy the contract, so they build the instance directly.
This does what `BaseModel.model_construct` does for a complete set of fields, about seven times faster.
Tests check that every model built this way equals the one `model_validate` gives for the same values.
"""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)

_new = object.__new__
# BaseModel's own slots, set through their descriptors (what `object.__setattr__` finds, without the look-up)
_set_dict = BaseModel.__dict__["__dict__"].__set__
_set_fields_set = BaseModel.__dict__["__pydantic_fields_set__"].__set__
_set_extra = BaseModel.__dict__["__pydantic_extra__"].__set__
_set_private = BaseModel.__dict__["__pydantic_private__"].__set__


def trusted(cls: type[M], values: dict[str, Any]) -> M:
    """An instance of `cls` holding `values` (every field, in declaration order), unvalidated."""
    instance = _new(cls)
    _set_dict(instance, values)
    _set_fields_set(instance, set(values))
    _set_extra(instance, None)
    _set_private(instance, None)
    return instance


def flat_json(model: BaseModel) -> bytes:
    """The same bytes as `model.model_dump_json()` for a model whose fields are all plain JSON values,
    datetimes in UTC or dicts of them (the decisions), about ten times faster."""
    return orjson.dumps(model.__dict__, option=orjson.OPT_UTC_Z)
