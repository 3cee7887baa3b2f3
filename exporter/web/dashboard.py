"""The dashboard: the first page after login. The figures come from exporter.stats."""
from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user

from ..ops import health, host_limits, stats
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
    return render_template("dashboard/index.html", counts=stats.status_counts(), count_cap=stats.COUNT_CAP, bars=bars,
                           peak=max([b.total for b in bars] + [1]), waiting=stats.oldest_waiting(now),
                           failing=stats.failing_endpoints(), duration=duration, now=now,
                           expiring_keys=stats.expiring_pgp_keys(now), pgp_warning_days=stats.PGP_WARNING_DAYS,
                           **_processes())


def _processes():
    """Live workers and cron schedulers (fresh, not the banner's cached count) and down hosts."""
    cfg = current_app.config
    connection = health.redis_client(cfg["REDIS_URL"]) if cfg.get("REDIS_URL") else None
    redis_ok = health.check_redis(connection).ok
    slowed = [row for row in host_limits.overview()[0] if row.state and row.state.factor < 1] if redis_ok else []
    return {"workers": health.check_workers(connection, cfg["QUEUE_NAME"]) if redis_ok else None,
            "scheduler": health.check_scheduler(connection) if redis_ok else None,
            "hosts_down": health.down_hosts(), "hosts_slowed": slowed,
            "on_their_own": host_limits.workers_on_their_own()}


@bp.route("/hosts/probe", methods=["POST"])
def probe_host():
    """Probe now: the down host's next probe is due at once, and a drain is woken to send it."""
    name = request.form.get("host", "")
    if not health.probe_now(name):
        abort(404)
    flash(f"A probe of {name} goes out now; the host stays down until it succeeds.", "success")
    return redirect(url_for("dashboard.index"))


@bp.app_context_processor
def workers_banner():
    """Every page of a logged-in admin says when no worker is alive (one cached Redis call)."""
    if not current_user.is_authenticated:
        return {}
    return {"workers_alive": health.workers_alive_cached()}
