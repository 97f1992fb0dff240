"""Readiness: do the database and Redis answer right now? Asked by ``GET /readyz``.

Each probe opens nothing long-lived beyond one Redis client with short timeouts, and names only
the kind of failure: a driver's message carries the URL and its password.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import text

from bot.config import Settings

log = logging.getLogger(__name__)


class Readiness:
    def __init__(self, settings: Settings, *, engine: Any, timeout: float = 2.0) -> None:
        self._engine = engine
        self._redis: Any = None
        if settings.redis_url is not None:
            from redis import Redis

            self._redis = Redis.from_url(settings.redis_url, socket_connect_timeout=timeout, socket_timeout=timeout)

    def check(self) -> dict[str, str]:
        """``{"database": "ok" | "unavailable (Kind)", "redis": …}``; the embedded queue has no Redis line."""
        result = {"database": self._database()}
        if self._redis is not None:
            result["redis"] = self._redis_state()
        return result

    def _database(self) -> str:
        try:
            with self._engine.connect() as connection:
                connection.execute(text("SELECT 1"))
            return "ok"
        except Exception as e:
            log.warning("readiness: the database does not answer (%s)", type(e).__name__)
            return f"unavailable ({type(e).__name__})"

    def _redis_state(self) -> str:
        try:
            self._redis.ping()
            return "ok"
        except Exception as e:
            log.warning("readiness: Redis does not answer (%s)", type(e).__name__)
            return f"unavailable ({type(e).__name__})"

    def close(self) -> None:
        if self._redis is not None:
            self._redis.close()
