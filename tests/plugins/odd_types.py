"""Entry points that load but do not keep the contract, each in its own way."""
from exporter.export_types import ExportType

from .twin_one import TwinSettings


class NotAType:
    key = "plain"


class WrongKey(ExportType):
    key = "other"
    label = "Wrong key"
    settings_form = TwinSettings


class HourlyType(ExportType):
    key = "hourly"
    label = "Hourly"
    schedule = "hourly"
    settings_form = TwinSettings


class NoFormType(ExportType):
    key = "noform"
    label = "No form"
    settings_form = dict
