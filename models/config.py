"""Settings, read from the environment (prefix WCT_) once, when first needed."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """All of wct's configuration; secrets come from the environment, never from the repo."""

    model_config = SettingsConfigDict(env_prefix="WCT_", extra="ignore")

    home: Path = Field(
        default=Path(".wct"), description="Folder for the embedded database and mail."
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL; default is a SQLite file under WCT_HOME.",
    )

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.home / 'wct.db').resolve()}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, built on first use (never at import)."""
    return Settings()
