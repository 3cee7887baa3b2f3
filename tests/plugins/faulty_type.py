"""An export type with bugs: send() raises, test_connection() returns no Outcome."""
from exporter.export_types import ExportType

from .twin_one import TwinSettings


class FaultyType(ExportType):
    key = "faulty"
    label = "Faulty"
    settings_form = TwinSettings

    def send(self, batch):
        raise RuntimeError("the plugin's bug")

    def test_connection(self, allow_private_targets=False):
        return "fine, probably"
