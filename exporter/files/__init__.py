"""Daily files: the tick that makes each day's file deliveries, a day's rows streamed into a
batch, the history written per customer in a file, re-runs (daily_files.py), and the masked copy
kept for download (kept_copies.py).

May import: profiles, ops, delivery (schedule, sending) and the foundation. The drain sends a
day's file through this part without importing it: the app factory hands daily_files to it
(app.extensions["daily_files"]).
"""
