"""Daily files: re-run a past day's file, download a file as it was sent (masked)."""
import os

from flask import Blueprint, abort, flash, redirect, render_template, send_file, url_for
from flask_wtf import FlaskForm
from werkzeug.routing import BuildError
from wtforms import StringField
from wtforms.validators import DataRequired

from ..export_types import PGP_SUFFIXES
from ..files import daily_files
from ..extensions import db
from ..models import Delivery, Profile
from . import admin_blueprint

bp = admin_blueprint(Blueprint("files", __name__, url_prefix="/files"))


class RerunForm(FlaskForm):
    date = StringField("Date", validators=[DataRequired("Date is required")], render_kw={"type": "date"},
                       description="The day whose file is rebuilt and sent again, for every route (YYYY-MM-DD).")


def profile_page(profile):
    try:
        return url_for("profiles.edit", profile_id=profile.id)
    except BuildError:  # the edit page's endpoint is not there: the list shows the profile too
        return url_for("profiles.index", profile=profile.id)


def _files(n):
    return f"{n} {'file' if n == 1 else 'files'}"


@bp.route("/profiles/<int:profile_id>/rerun", methods=["GET", "POST"])
def rerun(profile_id):
    profile = db.get_or_404(Profile, profile_id)
    form = RerunForm()
    if form.validate_on_submit():
        try:
            queued, busy = daily_files.rerun(profile, daily_files.parse_day(form.date.data))
        except daily_files.RerunError as exc:
            errors = form.date.errors if exc.field == "date" else form.form_errors
            errors.append(str(exc))
        else:
            names = "; ".join(f"for {daily_files.route_words(d.route)}" for d in queued)
            message = f"Re-run of {form.date.data.strip()} queued: {_files(len(queued))}{f' ({names})' if names else ''}."
            if busy:
                message += f" {_files(len(busy))} {'is' if len(busy) == 1 else 'are'} being sent right now and left alone."
            flash(message, "success")
            return redirect(profile_page(profile))
    status = 400 if form.is_submitted() else 200
    return render_template("files/rerun.html", form=form, profile=profile, back=profile_page(profile)), status


@bp.route("/deliveries/<int:delivery_id>/download")
def download(delivery_id):
    delivery = db.get_or_404(Delivery, delivery_id)
    path = daily_files.kept_copy_path(delivery)
    deleted = (delivery.details or {}).get(daily_files.KEPT_COPY_GONE)
    if delivery.file_date is not None and deleted:
        return render_template("errors.html", title="Copy deleted",
                               message=f"The copy kept for download of this file was {deleted}."), 410
    if delivery.file_date is None or not os.path.exists(path):
        abort(404, description="No file was kept for this delivery: it has not been uploaded yet.")
    name = kept_copy_name((delivery.details or {}).get("file_name") or f"delivery-{delivery.id}.csv")
    return send_file(path, mimetype=MIMETYPES.get(os.path.splitext(name)[1], "text/csv"), as_attachment=True,
                     download_name=name, max_age=0)


MIMETYPES = {".gz": "application/gzip", ".zip": "application/zip"}


def kept_copy_name(name):
    """The kept copy is the file as sent before encryption (an admin reads it): its name less .pgp or .gpg."""
    return name[:-4] if name.endswith(PGP_SUFFIXES) else name
