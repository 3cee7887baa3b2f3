"""The dashboard: the first page after login. The figures come from exporter.stats."""
from flask import Blueprint, render_template

from .. import stats
from ..models import utcnow
from . import admin_blueprint

bp = admin_blueprint(Blueprint("dashboard", __name__))


def duration(delta):
    """A wait as an operator reads it: '2 d 3 h', '3 h 5 min', '4 min', '12 s'."""
    seconds = max(int(delta.total_seconds()), 0)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min"
    return f"{seconds} s"


@bp.route("/")
def index():
    now = utcnow()
    bars = stats.attempts_per_hour(now)
    return render_template("dashboard/index.html", counts=stats.status_counts(), bars=bars,
                           peak=max([b.total for b in bars] + [1]), waiting=stats.oldest_waiting(now),
                           failing=stats.failing_endpoints(), duration=duration)
