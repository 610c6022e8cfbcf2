"""Delivery settings live in the one `Settings` class (models.config); these names are theirs."""

from __future__ import annotations

from models.config import Settings as NotificationSettings
from models.config import TlsMode
from models.config import get_settings as get_notification_settings

__all__ = ["NotificationSettings", "TlsMode", "get_notification_settings"]
