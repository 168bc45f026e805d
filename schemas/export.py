"""Write the JSON Schema (draft 2020-12) of every event type, generated from the pydantic models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from schemas.events import (
    INBOUND_TYPES,
    ClassificationChanged,
    CustomerErased,
    EventRejected,
    PerkGranted,
    PerkRevoked,
    StepChanged,
    inbound_adapter,
)

DIALECT = "https://json-schema.org/draft/2020-12/schema"
OUTBOUND_TYPES: dict[str, type[BaseModel]] = {
    "perk.granted": PerkGranted,
    "perk.revoked": PerkRevoked,
    "customer.step_changed": StepChanged,
    "customer.classification_changed": ClassificationChanged,
    "customer.erased": CustomerErased,
    "event.rejected": EventRejected,
}


def json_schemas() -> dict[str, dict[str, Any]]:
    """File name → JSON Schema: one per event type, plus `inbound.json` for any inbound event."""
    schemas: dict[str, dict[str, Any]] = {}
    for event_type, model in {**INBOUND_TYPES, **OUTBOUND_TYPES}.items():
        schemas[f"{event_type}.json"] = _stamp(model.model_json_schema(), event_type)
    union = inbound_adapter.json_schema()
    # `discriminator` is OpenAPI's, not JSON Schema's; the `type` constants already make `oneOf` exclusive.
    union.pop("discriminator", None)
    union["title"] = "InboundEvent"
    union["description"] = "Any event a platform may publish to Escalera, told apart by `type`."
    schemas["inbound.json"] = _stamp(union, "inbound")
    return schemas


def export_json_schemas(directory: Path) -> list[Path]:
    """Write every schema into `directory` (sorted keys, indented, final newline); return the paths."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in sorted(json_schemas().items()):
        path = directory / name
        path.write_text(json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
        written.append(path)
    return written


def _stamp(schema: dict[str, Any], name: str) -> dict[str, Any]:
    return {"$schema": DIALECT, "$id": f"urn:escalera:schema:{name}:1", **schema}
