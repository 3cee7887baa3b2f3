"""The FTP export type: one CSV file per route per day, uploaded to a partner's server."""
from wtforms import Form, IntegerField, PasswordField, StringField
from wtforms.validators import DataRequired, NumberRange, Optional

from exporter.export_types import DAILY_FILE, ExportType, Outcome


class FtpSettings(Form):
    host = StringField("FTP Host", validators=[DataRequired("FTP Host is required")])
    port = IntegerField("Port", default=21, validators=[Optional(), NumberRange(1, 65535, "between 1 and 65535")])
    username = StringField("Username", validators=[DataRequired("Username is required")])
    password = PasswordField("Password")
    directory = StringField("Remote Directory", default="/")


class FtpType(ExportType):
    key = "ftp"
    label = "FTP"
    schedule = DAILY_FILE
    settings_form = FtpSettings
    secret_settings = ("password",)

    def describe(self):
        s = self.settings
        return f"{s.get('host', '')}:{s.get('port') or 21}{s.get('directory') or '/'}"

    def send(self, batch):
        return Outcome(ok=False, error="FTP upload is not built yet")
