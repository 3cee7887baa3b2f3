"""Credentials in Static mappings and Postback URLs are stored encrypted

A header: mapping's Static Value, or one whose Export Name is credential-like, becomes Fernet
ciphertext ("enc:..."); a URL setting with userinfo or credential-like query values is stored
masked, the whole URL encrypted beside it under "<setting>_credentials". Down reverses both.

Revision ID: b8c9d0e1f2a3
Revises: a7b8c9d0e1f2
Create Date: 2026-12-07 10:00:00

"""
import json
import logging

import sqlalchemy as sa
from alembic import op
from flask import current_app

from exporter import security

log = logging.getLogger("alembic.runtime.migration")

revision = "b8c9d0e1f2a3"
down_revision = "a7b8c9d0e1f2"
branch_labels = None
depends_on = None

URL_SETTING, CREDENTIALS = "url", "url_credentials"  # what ExportType.url_settings defaults to


def _key_and_names():
    config = current_app.config
    return config["SECRET_KEY"], config.get("SECRET_NAMES") or security.DEFAULT_SECRET_NAMES


def _settings(value):
    return json.loads(value) if isinstance(value, str) else dict(value or {})


def upgrade():
    key, names = _key_and_names()
    connection = op.get_bind()
    mappings = connection.execute(sa.text("SELECT id, export_name, static_value FROM field_mappings "
                                          "WHERE field = 'static'")).all()
    for id_, name, value in mappings:
        if value and not value.startswith(security.ENCRYPTED_PREFIX) and security.is_secret_mapping(name, "static", names):
            connection.execute(sa.text("UPDATE field_mappings SET static_value = :v WHERE id = :id"),
                               {"v": security.encrypt(key, value), "id": id_})
    for id_, raw in connection.execute(sa.text("SELECT id, settings FROM profiles")).all():
        settings = _settings(raw)
        url = settings.get(URL_SETTING)
        if not isinstance(url, str) or CREDENTIALS in settings:
            continue
        masked, found = security.masked_url(url, names)
        if found:
            settings[URL_SETTING], settings[CREDENTIALS] = masked, security.encrypt(key, url)
            _store(connection, id_, settings)


def downgrade():
    key, _ = _key_and_names()
    connection = op.get_bind()
    for id_, value in connection.execute(sa.text("SELECT id, static_value FROM field_mappings")).all():
        plain = _opened(key, value, f"field mapping {id_}")
        if plain is not None:
            connection.execute(sa.text("UPDATE field_mappings SET static_value = :v WHERE id = :id"),
                               {"v": plain, "id": id_})
    for id_, raw in connection.execute(sa.text("SELECT id, settings FROM profiles")).all():
        settings = _settings(raw)
        url = _opened(key, settings.get(CREDENTIALS), f"profile {id_}'s URL")
        if url is not None:
            settings.pop(CREDENTIALS)
            settings[URL_SETTING] = url
            _store(connection, id_, settings)


def _opened(key, value, what):
    """value decrypted, or None: not encrypted, or not with this SECRET_KEY (then it stays as it
    is, and says so: the older version would send the ciphertext, so type it again there)."""
    if not value or not value.startswith(security.ENCRYPTED_PREFIX):
        return None
    try:
        return security.decrypt(key, value)
    except ValueError:
        log.warning("%s stays encrypted: this SECRET_KEY cannot decrypt it", what)
        return None


def _store(connection, id_, settings):
    update = sa.text("UPDATE profiles SET settings = :s WHERE id = :id").bindparams(sa.bindparam("s", type_=sa.JSON))
    connection.execute(update, {"s": settings, "id": id_})
