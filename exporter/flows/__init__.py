"""Flows over several parts: Send past events (replay.py) and retention, the purge and Forget
this customer (retention.py). They sit above the parts they use.

May import: files, profiles, ops, delivery and the foundation. Imported by web/, the intake
never, and the entry points (jobs, cli).
"""
