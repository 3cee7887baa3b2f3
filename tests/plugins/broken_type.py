"""An export type whose package fails to import: its own dependency is missing."""
import exporter_crm_sdk_that_is_not_installed  # noqa: F401

from exporter.export_types import ExportType


class CrmType(ExportType):
    key = "crm"
