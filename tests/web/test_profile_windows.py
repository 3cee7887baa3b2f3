"""General Settings' Send Window and Daily Cap (issue 12): saved as given, errors beside the fields."""
import re

import pytest

from exporter.extensions import db
from exporter.models import Profile

from ..factories import make_profile
from ..pages import error_beside, text
from .test_profile_edit import general


def window(**changes):
    data = {"window_days": ["mon", "tue", "wed", "thu", "fri"], "window_start": "08:00", "window_end": "20:00",
            "window_time_zone": "America/New_York", "daily_cap": "500", "over_cap": "wait"}
    return {**data, **changes}


def test_an_admin_sets_partials_between_8_and_8_at_most_500_a_day(logged_in):
    profile = make_profile()
    page = text(logged_in.get(f"/profiles/{profile.id}"))
    for label in ("Send Window", "Days", "From", "To", "Time Zone", "Daily Cap", "Over the cap",
                  "Wait for the next day"):
        assert label in page
    response = logged_in.post(f"/profiles/{profile.id}", data=general(profile, **window()))
    assert response.status_code == 302
    db.session.expire_all()
    saved = db.session.get(Profile, profile.id)
    assert (saved.window_days, saved.window_start, saved.window_end, saved.window_time_zone, saved.daily_cap,
            saved.over_cap) == ("mon,tue,wed,thu,fri", 480, 1200, "America/New_York", 500, "wait")
    page = text(logged_in.get(f"/profiles/{profile.id}"))
    assert 'value="08:00"' in page and 'value="20:00"' in page and 'value="500"' in page


def test_empty_from_and_to_mean_any_time_and_an_empty_cap_no_cap(logged_in):
    profile = make_profile(send_window={"days": ["mon"], "from": "08:00", "to": "20:00"}, daily_cap=5)
    response = logged_in.post(f"/profiles/{profile.id}",
                              data=general(profile, **window(window_start="", window_end="", daily_cap="")))
    assert response.status_code == 302
    db.session.expire_all()
    saved = db.session.get(Profile, profile.id)
    assert (saved.window_start, saved.window_end, saved.daily_cap) == (None, None, None)


@pytest.mark.parametrize("changes,field,message", [
    (dict(window_start="8am"), "window_start", "Give a time as HH:MM"),
    (dict(window_end="24:30"), "window_end", "Give a time as HH:MM"),
    (dict(window_end=""), "window_end", "Give both From and To"),
    (dict(window_end="08:00"), "window_end", "whole day"),
    (dict(window_days=[]), "window_days", "Choose at least one day"),
    (dict(window_time_zone="Eastern"), "window_time_zone", "is not a time zone"),
    (dict(window_time_zone="America"), "window_time_zone", "is not a time zone"),  # a directory: OSError
    (dict(window_time_zone="a" * 300), "window_time_zone", "Time Zone is at most 64 characters"),  # not a 500
    (dict(daily_cap="0"), "daily_cap", "Daily Cap is a whole number from 1"),
    (dict(daily_cap="lots"), "daily_cap", "Daily Cap is a whole number from 1"),
    (dict(over_cap="drop"), "over_cap", "Not a valid choice"),
])
def test_a_bad_window_or_cap_is_refused_beside_its_field_and_nothing_is_stored(logged_in, changes, field, message):
    profile = make_profile()
    response = logged_in.post(f"/profiles/{profile.id}", data=general(profile, **window(**changes)))
    assert response.status_code == 422
    assert any(message in error for error in error_beside(response, field))
    db.session.expire_all()
    assert db.session.get(Profile, profile.id).window_start is None


def _opens_in(hours):
    """A window of every day opening `hours` from now for an hour (UTC), and that opening."""
    from datetime import timedelta

    from exporter import windows
    from exporter.models import utcnow

    opens = utcnow().replace(second=0, microsecond=0) + timedelta(hours=hours)
    return {"days": list(windows.DAYS), "from": f"{opens:%H:%M}", "to": f"{opens + timedelta(hours=1):%H:%M}"}, opens


def test_removing_or_widening_the_window_moves_deliveries_already_waiting_for_it(logged_in, post_events):
    from datetime import timedelta

    from exporter.models import Delivery, utcnow

    from ..factories import event

    window_, opens = _opens_in(6)
    # Export Delay 7200 test minutes (seconds): two hours; the window held both until its opening.
    profile = make_profile(send_window=window_, delay_minutes=7200)
    quick = make_profile(name="quick", send_window=window_)
    post_events(event(occurred_at=utcnow().isoformat() + "Z"))
    waiting = {d.profile_id: d for d in db.session.scalars(db.select(Delivery))}
    assert {d.due_at for d in waiting.values()} == {opens}
    no_window = dict(window_start="", window_end="", window_time_zone="UTC", daily_cap="", over_cap="wait")
    assert logged_in.post(f"/profiles/{profile.id}", data=general(profile, **no_window)).status_code == 302
    # Widened: open from an hour ago to seven hours on.
    wider = dict(no_window, window_days=window_["days"], window_start=_opens_in(-1)[0]["from"],
                 window_end=_opens_in(7)[0]["from"])
    assert logged_in.post(f"/profiles/{quick.id}", data=general(quick, **wider)).status_code == 302
    db.session.expire_all()
    delayed, now_due = db.session.get(Delivery, waiting[profile.id].id), db.session.get(Delivery, waiting[quick.id].id)
    occurred = delayed.event.occurred_at
    assert delayed.due_at == occurred + timedelta(hours=2)  # no window now; its Export Delay still holds
    assert now_due.due_at <= utcnow()  # the wider window is open now: due at once


def test_the_send_window_reads_as_a_form_not_as_values(logged_in):
    """No placeholder that looks like a set window; the Time Zone is a list to search; the cap says
    it counts from when it is set; a viewer with no window reads 'None'."""
    from exporter.windows import zone_names

    profile = make_profile()
    html = logged_in.get(f"/profiles/{profile.id}").get_data(as_text=True)
    assert 'placeholder="08:00"' not in html and 'placeholder="20:00"' not in html
    assert 'list="time-zones"' in html and '<option value="America/New_York">' in html
    assert "America/New_York" in zone_names() and "UTC" in zone_names()
    assert "It counts from when it is set: exports sent earlier that day do not count." in html
    assert '<ul class="days"' in html and '<fieldset id="send-window" class="type-settings">' in html


def test_a_daily_file_profile_shows_one_time_zone_and_no_export_delay(logged_in):
    profile = make_profile(name="Nightly", export_type="ftp", mappings=[{"export_name": "email", "field": "emailAddress"}],
                           settings={"protocol": "sftp", "host": "files.example.com", "username": "p",
                                     "time_zone": "Europe/Paris"})
    html = logged_in.get(f"/profiles/{profile.id}").get_data(as_text=True)
    assert len(re.findall(r'<label for="[^"]*time_zone">Time Zone</label>', html)) == 1
    assert 'id="delay_minutes"' not in html and "no Export Delay applies" in html
    assert 'id="daily_cap"' not in html


def test_saving_a_daily_file_keeps_its_hidden_settings_and_takes_its_time_zone(logged_in):
    profile = make_profile(name="Nightly", export_type="ftp", delay_minutes=5,
                           mappings=[{"export_name": "email", "field": "emailAddress"}],
                           settings={"protocol": "sftp", "host": "files.example.com", "username": "p",
                                     "time_zone": "Europe/Paris"})
    html = logged_in.get(f"/profiles/{profile.id}").get_data(as_text=True)
    form = dict(re.findall(r'<input[^>]*type="hidden" name="(delay_minutes|window_time_zone|daily_cap|over_cap)" '
                           r'value="([^"]*)"', html))
    assert form == {"delay_minutes": "5", "window_time_zone": "UTC", "daily_cap": "", "over_cap": "wait"}
    data = {**general(profile), **form, "settings-protocol": "sftp", "settings-host": "files.example.com",
            "settings-username": "p", "settings-time_zone": "America/Chicago", "settings-send_at": "01:00",
            "settings-file_name": "{profile}_{date}.csv", "settings-remote_dir": "/"}
    assert logged_in.post(f"/profiles/{profile.id}", data=data).status_code == 302
    db.session.expire_all()
    profile = db.session.get(Profile, profile.id)
    assert (profile.delay_minutes, profile.window_time_zone, profile.daily_cap) == (5, "America/Chicago", None)


def test_a_failed_save_says_so_at_the_top(logged_in):
    profile = make_profile()
    response = logged_in.post(f"/profiles/{profile.id}", data=general(profile, delay_minutes="-5"))
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert html.index('<div class="flash error">General Settings not saved: see the errors below.</div>') < html.index(
        'id="general-settings"')
