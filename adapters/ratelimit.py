"""The command rate limit shared by every ``pvebot serve`` process, in Redis.

A fixed window per identity: ``INCR`` of a key named by the identity and the window's number, which
expires with the window. Two processes behind a load balancer therefore share one allowance. When Redis
does not answer, commands are let through (and a warning logged): a limiter must not take the bot down.
"""

from __future__ import annotations

import hashlib
import logging
import time

from redis import Redis
from redis.exceptions import RedisError

from core.chat import IdentityKey
from core.errors import RateLimited

log = logging.getLogger(__name__)


class RedisRateLimiter:
    def __init__(self, connection: Redis, *, limit: int = 30, window: int = 10, prefix: str = "pvebot:rl") -> None:
        self.connection, self.limit, self.window, self.prefix = connection, limit, window, prefix

    def check(self, key: IdentityKey) -> None:
        window = int(time.time()) // self.window
        # hashed: platform user ids are not secrets, but need not sit in Redis in the clear either
        who = hashlib.sha256(f"{key.platform}\0{key.workspace_id}\0{key.user_id}".encode()).hexdigest()[:32]
        name = f"{self.prefix}:{who}:{window}"
        try:
            pipe = self.connection.pipeline()
            pipe.incr(name)
            pipe.expire(name, self.window * 2)
            count = int(pipe.execute()[0])
        except RedisError:
            log.warning("the shared rate limit is unavailable (Redis does not answer); letting the command through")
            return
        if count > self.limit:
            raise RateLimited()
