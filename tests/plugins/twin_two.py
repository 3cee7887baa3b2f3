"""The other plugin that registers the key "twin"."""
from exporter.export_types import ExportType, Outcome

from .twin_one import TwinSettings


class TwinType(ExportType):
    key = "twin"
    label = "Twin (two)"
    settings_form = TwinSettings

    def send(self, batch):
        return Outcome(ok=True, summary="twin two")
