"""Profiles: a profile's rules (rules.py: names, delay, PCI, routes, settings and secrets, the
preview, delete, audit snapshots), the profiles JSON (as_code.py), the 14 customer types
(customer_types.py) and route matching (matching.py).

May import: delivery and the foundation (the mapping engine and the field catalog live there,
as every part renders with them). Not ops, files, flows, intake or web.
"""
