"""Reversal postbacks: a refund, chargeback or cancel sent to the profile that exported the
original sale of the same order ("Reversal of: <profile>"), with the original export's values
for the mappings: original.captured_id, original.sent_at and original.<Export Name>.

Checked when a reversal is about to be sent, on every try: an order the original profile never
exported (or whose export was cancelled or rejected) gets no reversal, and the history says why;
an original still on its way makes the reversal wait for it (a failed try, retried)."""
from dataclasses import dataclass, field

from sqlalchemy import case, select

from .. import catalog
from ..extensions import db
from ..models import Delivery, Event, Profile
from . import sending

SENT_AT = "%Y-%m-%d %H:%M:%S"


@dataclass
class Plan:
    """What to do with a reversal's delivery: send (with the original's fields), wait or cancel."""
    action: str  # "send", "wait", "cancel"
    fields: dict = field(default_factory=dict)
    message: str = ""  # wait: the try's error; cancel: the reason and the history message
    history: str = ""
    original_id: int | None = None


def types_of(profile):
    return {t for t in (profile.reversal_types or "").split(",") if t}


def is_reversal(profile, event_type):
    return profile.reversal_of_id is not None and event_type in types_of(profile)


def plan(profile, order_id):
    """The plan for a reversal of the order by this profile (is_reversal holds)."""
    original_profile = db.session.get(Profile, profile.reversal_of_id)
    name = original_profile.name if original_profile else "the original profile"
    original = _original(profile.reversal_of_id, order_id) if order_id is not None else None
    if original is None:
        what = f"order {order_id}" if order_id is not None else "an order with no order id"
        return Plan("cancel", message=f"never exported by '{name}'",
                    history=f"Not reversed by '{profile.name}': {what} was never exported by '{name}'")
    if original.status != "delivered":
        return Plan("wait", original_id=original.id,
                    message=f"waiting for the original export (delivery #{original.id}) to be delivered")
    return Plan("send", fields=original_fields(original_profile, original), original_id=original.id)


def _original(profile_id, order_id):
    """The original profile's export of the order: the last delivered one, else one on its way."""
    return db.session.scalar(
        select(Delivery).join(Event, Event.id == Delivery.event_id)
        .where(Delivery.profile_id == profile_id, Event.order_id == order_id,
               Delivery.status.not_in(("cancelled", "rejected")))
        .order_by(case((Delivery.status == "delivered", 0), else_=1), Delivery.id.desc()).limit(1))


def original_fields(original_profile, original):
    """original.captured_id, original.sent_at and each value the original's mappings make of its
    event now (sensitive values masked: a card number never travels to another partner)."""
    fields = {}
    event = original.event
    if event is not None and event.purged_at is None:
        renderer = sending.renderer_for(original_profile)
        row = renderer.masked(sending.render(renderer, event, original_profile))
        fields.update({f"{catalog.ORIGINAL}{name}": value for name, value in row})
    # Never shadowed by an original mapping of the same name.
    fields[f"{catalog.ORIGINAL}captured_id"] = original.captured_id or ""
    fields[f"{catalog.ORIGINAL}sent_at"] = original.delivered_at.strftime(SENT_AT) if original.delivered_at else ""
    return fields

