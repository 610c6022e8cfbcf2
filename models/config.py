"""Settings, read from the environment (prefix WCT_) once, when first needed."""

from __future__ import annotations

from enum import StrEnum
from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from models.redact import environment_secrets, redact, url_secrets


class TlsMode(StrEnum):
    NONE = "none"
    STARTTLS = "starttls"
    SSL = "ssl"


class Settings(BaseSettings):
    """All of wct's configuration; secrets come from the environment, never from the repo.

    Delivery: SMTP when WCT_SMTP_HOST is set, else `.eml` files under WCT_HOME/mail. The SMTP
    password is a `SecretStr`, so a repr, a log line or an error message shows `**********`.
    """

    model_config = SettingsConfigDict(env_prefix="WCT_", extra="ignore")

    home: Path = Field(
        default=Path(".wct"), description="Folder for the embedded database and mail."
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL; default is a SQLite file under WCT_HOME.",
    )

    smtp_host: str | None = Field(default=None, description="No host: write to the mail folder.")
    smtp_port: int | None = Field(default=None, ge=1, le=65535)
    smtp_tls: TlsMode = TlsMode.STARTTLS
    smtp_user: str | None = None
    smtp_password: SecretStr | None = None
    smtp_password_block: str | None = Field(
        default=None, description="Prefect Secret block holding the password (flows only)."
    )
    smtp_verify: bool = Field(default=True, description="Verify the server's TLS certificate.")
    smtp_ca_file: Path | None = Field(
        default=None, description="Also trust this CA bundle (PEM): a private mail relay."
    )
    mail_from: str = Field(default="wct@localhost", description="The From address.")
    mail_from_name: str = "wct"
    workers: int = Field(default=4, ge=1, le=32, description="Concurrent deliveries.")
    batch_size: int = Field(default=500, ge=1, le=5000)
    send_chunk: int = Field(
        default=20,
        ge=1,
        le=500,
        description="Messages per `sending` commit; a crash can leave this many `unknown`.",
    )
    lease_seconds: int = Field(default=300, ge=10, le=86400)
    run_limit: int = Field(
        default=1,
        ge=1,
        le=32,
        description="Flow runs `wct up` executes at once. Each is a Python process of ~140 MB; "
        "1 keeps server and runs under 600 MB on a small machine.",
    )

    web_url: str = Field(
        default="http://127.0.0.1:4300",
        description="Where members' pages are served; links in messages point here.",
    )
    link_key: SecretStr | None = Field(
        default=None,
        description="Key that signs members' links (base64url or hex, >= 32 bytes); "
        "default: WCT_HOME/secrets/link.key, created on first use.",
    )
    web_max_body: int = Field(
        default=10 * 1024 * 1024,
        ge=1024,
        description="Largest request the members' pages accept (bytes); larger gets 413.",
    )

    @property
    def mail_dir(self) -> Path:
        return self.home / "mail"

    @property
    def port(self) -> int:
        if self.smtp_port is not None:
            return self.smtp_port
        return {TlsMode.NONE: 25, TlsMode.STARTTLS: 587, TlsMode.SSL: 465}[self.smtp_tls]

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.home / 'wct.db').resolve()}"

    @property
    def shown_database_url(self) -> str:
        """The database URL as it may be shown: its password hidden."""
        return redact(self.resolved_database_url, self.secret_values())

    def secret_values(self) -> list[str]:
        """Every secret these settings (and Prefect's, in the environment) hold, for `redact`."""
        values = url_secrets(self.resolved_database_url) + environment_secrets()
        for secret in (self.smtp_password, self.link_key):
            if secret is not None and secret.get_secret_value():
                values.append(secret.get_secret_value())
        return values


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, built on first use (never at import)."""
    return Settings()
