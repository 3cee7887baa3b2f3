"""Duplicate suppression: a profile may refuse the same customer (by email, phone or a chosen
field) again within N days. Checked when a delivery is about to be sent, so intake, replay and
Retry now all honour it: a delivery whose customer this profile was sent within the window (or
is being sent right now) is cancelled with a history message, never sent.

The customer's value is kept only as a digest (Delivery.dedupe_key), set when a send starts."""
import hashlib
import re
from datetime import timedelta

from sqlalchemy import and_, or_, select

from .. import catalog
from ..extensions import db
from ..models import Delivery

BY = {"email": "email", "phone": "phone"}  # or a catalog field's key


def key_of(profile, order, event_type):
    """The digest of the customer's value this profile suppresses by, or None when it has none."""
    by = profile.dedupe_by or "email"
    if by == "email":
        value = str(order.get("emailAddress") or "").strip().lower()
    elif by == "phone":
        value = re.sub(r"\D", "", str(order.get("phoneNumber") or ""))
    else:
        value = str(catalog.record_from_order(order, event_type).get(by) or "").strip()
    if not value:
        return None
    return hashlib.sha256(f"{by}:{value}".encode()).hexdigest()


def earlier(profile, key, delivery_id, now):
    """Another delivery of the profile for the same customer: delivered within the window, or
    being sent now. Its id, or None."""
    since = now - timedelta(days=profile.dedupe_days)
    d = Delivery
    return db.session.scalar(
        select(d.id).where(d.profile_id == profile.id, d.dedupe_key == key, d.id != delivery_id,
                           or_(and_(d.status == "delivered", d.delivered_at >= since), d.status == "sending"))
        .limit(1))


def what(profile):
    by = profile.dedupe_by or "email"
    return BY.get(by, by)


def reason(profile, earlier_id):
    return f"duplicate: this customer was sent to this profile within {profile.dedupe_days} days (delivery #{earlier_id})"


def history(profile):
    return (f"Not exported to '{profile.name}': the same {what(profile)} was sent to it within the last "
            f"{profile.dedupe_days} days (duplicate suppression)")
