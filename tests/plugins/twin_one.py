"""One of two plugins that register the same key, "twin"."""
from wtforms import Form, StringField

from exporter.export_types import ExportType, Outcome


class TwinSettings(Form):
    name = StringField("Name")


class TwinType(ExportType):
    key = "twin"
    label = "Twin (one)"
    settings_form = TwinSettings

    def send(self, batch):
        return Outcome(ok=True, summary="twin one")
