"""Operations: health checks and Probe now (health.py), the Prometheus figures (metrics.py), the
dashboard's queries (stats.py), admins and their invites (admins.py), alerts by email and
webhook (alerts.py), and the supervisor that
`exporter run` keeps its children with (supervisor.py).

May import: delivery and the foundation. Not profiles, files, flows, intake or web.
"""
