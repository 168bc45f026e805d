"""Escalera's event contracts: pydantic models, generated JSON Schemas and the AsyncAPI document."""
