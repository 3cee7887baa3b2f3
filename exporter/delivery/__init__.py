"""The delivery engine: due times and backoff (schedule.py), send windows and daily caps applied
to a claim (admission.py), the drain (drain.py; claim.py, prepare.py, record.py, heartbeat.py),
a worker's sender threads (engine.py), what a send needs (sending.py), circuits per host
(circuit.py), worker heartbeats and dead claims (workers.py), retry now, cancel and the sweeper
(dispatch.py), reversal postbacks' originals (reversals.py), duplicate suppression
(suppression.py), and the RQ wiring (queue.py).

May import: only the foundation (models, extensions, config, security, audit, export_types,
mapping, catalog, windows). Every other part stands on this one.
"""
