"""The intake: the CRM's door.

Owns: parsing and checking a body (accept.py, pydantic, whole body first), storing it in one
transaction with group commit (accept.py, sql.py: the inserts as SQL text per database kind),
the intake's OpenAPI document (openapi.py) and intake tokens (tokens.py).

May import: files, profiles, ops, delivery and the foundation (models, security, audit,
mapping, catalog, windows, config, extensions, export_types). Imported by web/ and the entry points.
"""
