from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from service.core.db import Base, UTCDateTime, utcnow


class UiSession(Base):
    """A browser's sign-in to the dashboard, made from an API token.

    The cookie holds a random session id; only its hash is stored. The session lives as long
    as the token it was made from: a revoked or expired token (or a disabled user) ends it on
    the next request, because every page looks the token up again (service.ui.auth)."""

    __tablename__ = "ui_sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_hash: Mapped[str] = mapped_column(String(64), unique=True)
    token_id: Mapped[int] = mapped_column(ForeignKey("api_tokens.id", ondelete="CASCADE"), index=True)
    # Sent back in every state-changing form (cancel, rerun, sign-out): a cross-site page
    # cannot read it, so it cannot forge those POSTs even where SameSite is not honoured.
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
