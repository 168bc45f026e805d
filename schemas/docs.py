"""Write docs/events.md: every event and field in a table, with one example each, from the models."""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any, get_args

from pydantic import BaseModel

from schemas.events import INBOUND_TYPES, CurrencyCode, Traits
from schemas.export import OUTBOUND_TYPES

TOPICS: dict[str, str | tuple[str, ...]] = {
    "purchase.completed": "purchases",
    "purchase.refunded": "purchases",
    "feedback.received": "feedback",
    "customer.registered": "customers",
    "customer.interest_shown": "customers",
    "customer.erasure_requested": "customers",
    "perk.granted": "loyalty.perks",
    "perk.revoked": "loyalty.perks",
    "customer.step_changed": "loyalty.transitions",
    "customer.classification_changed": "loyalty.transitions",
    "customer.erased": ("loyalty.perks", "loyalty.transitions"),
    "event.rejected": "loyalty.dlq",
}

INTRO = """# Events

Every record is one JSON object (UTF-8, at most 64 KiB), keyed by `customer_id`. Timestamps are RFC 3339
with an offset; amounts are decimal strings (or JSON numbers) in the currency named beside them. Unknown
fields are ignored, so producers may add optional fields; an unknown `type` or a `schema_version` other
than 1 is dead-lettered with its own reason. The machine-readable contract is `schemas/json/` (JSON Schema
2020-12) and `schemas/asyncapi.yaml` (AsyncAPI 3.0); check a file before publishing it with
`escalera validate FILE`.

Generated from the models by `escalera schemas docs docs/events.md`; a test fails when it is stale.
"""


def events_markdown(examples: Path) -> str:
    """The whole page."""
    parts = [INTRO, "## Inbound (platforms publish these)\n"]
    parts += [_section(t, m, examples) for t, m in INBOUND_TYPES.items()]
    parts.append("### `traits` (in `customer.registered`)\n\n" + _table(Traits) + "\n")
    parts.append("## Outbound (Escalera publishes these)\n")
    parts += [_section(t, m, examples) for t, m in OUTBOUND_TYPES.items()]
    return "\n".join(parts)


def _section(event_type: str, model: type[BaseModel], examples: Path) -> str:
    example = json.loads((examples / f"{event_type}.json").read_text())
    topics = TOPICS[event_type]
    where = f"topic `{topics}`" if isinstance(topics, str) else "topics " + " and ".join(f"`{t}`" for t in topics)
    return (
        f"### `{event_type}` — {where}\n\n{inspect.cleandoc(model.__doc__ or '')}\n\n"
        f"{_table(model)}\n\n```json\n{json.dumps(example, indent=2, ensure_ascii=False)}\n```\n"
    )


def _table(model: type[BaseModel]) -> str:
    schema = model.model_json_schema()
    required = set(schema.get("required", []))
    rows = ["| field | type | required | meaning |", "|---|---|---|---|"]
    for name, field in model.model_fields.items():
        prop = schema["properties"].get(name, {})
        kind = _type_of(prop, currency=_is_currency(field.annotation))
        rows.append(
            f"| `{name}` | {kind} | {'yes' if name in required else 'no'} | "
            f"{(field.description or prop.get('description') or '').replace('|', '/')} |"
        )
    return "\n".join(rows)


def _is_currency(annotation: Any) -> bool:
    """Whether a field is declared as `CurrencyCode` (or `CurrencyCode | None`)."""
    return bool(annotation == CurrencyCode or CurrencyCode in get_args(annotation))


def _type_of(prop: dict[str, Any], currency: bool = False) -> str:
    if "const" in prop:
        return f"`{json.dumps(prop['const'])}`"
    if "enum" in prop:
        values = prop["enum"]
        if currency:  # the ISO 4217 list is long: a few codes, then how many there are
            shown = ", ".join(f"`{v}`" for v in values[:8])
            return shown + (f", … ({len(values)} ISO 4217 codes)" if len(values) > 8 else " (ISO 4217 codes)")
        return ", ".join(f"`{v}`" for v in values)
    if "anyOf" in prop:
        return " or ".join(_type_of(option, currency) for option in prop["anyOf"])
    if "$ref" in prop:
        return "object"
    kind = str(prop.get("type", "any"))
    if prop.get("format") == "date-time":
        return "RFC 3339 timestamp"
    bounds = [f"{k} {prop[k]}" for k in ("minimum", "maximum", "minLength", "maxLength") if k in prop]
    return kind + (f" ({', '.join(bounds)})" if bounds else "")
