"""Binance's REST request-weight limit per client IP, with its 429 and 418 answers.

Each IP has a weight budget per fixed window (Binance: 6000 per minute, windows aligned to the
clock). A request that takes the used weight past the limit gets 429 and ``Retry-After`` (the
seconds to the end of the window). A client that sends again before that is banned: 418 with
``Retry-After`` for the ban, and every later ban of the same IP is twice as long (Binance scales
bans "from 2 minutes to 3 days"). Requests during a ban get 418 with the time left.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["Decision", "WeightLimiter", "depth_weight"]


def depth_weight(limit: int) -> int:
    """``GET /api/v3/depth`` weight by ``limit`` (Binance: 5 / 25 / 50 / 250)."""
    if limit <= 100:
        return 5
    if limit <= 500:
        return 25
    if limit <= 1000:
        return 50
    return 250


@dataclass(slots=True)
class Decision:
    status: int
    """200 (go on), 429 or 418."""
    used: int
    """The IP's used weight in the current window, for ``X-MBX-USED-WEIGHT-1M``."""
    retry_after: int = 0
    banned_until_ms: int = 0


@dataclass(slots=True)
class _Client:
    window: int = -1
    used: int = 0
    limited_until: float = 0.0
    banned_until: float = 0.0
    bans: int = 0


class WeightLimiter:
    def __init__(self, limit: int, window_s: float, ban_base_s: float, ban_max_s: float) -> None:
        self.limit = limit
        self.window_s = window_s
        self.ban_base_s = ban_base_s
        self.ban_max_s = ban_max_s
        self._clients: dict[str, _Client] = {}

    def used(self, ip: str, now: float) -> int:
        client = self._clients.get(ip)
        if client is None or client.window != int(now // self.window_s):
            return 0
        return client.used

    def charge(self, ip: str, weight: int, now: float) -> Decision:
        """Count ``weight`` for ``ip`` at wall-clock time ``now`` and decide the answer."""
        client = self._clients.setdefault(ip, _Client())
        window = int(now // self.window_s)
        if window != client.window:
            client.window, client.used = window, 0
        if client.banned_until > now:
            return self._banned(client, now)
        if client.limited_until > now:
            ban = min(self.ban_max_s, self.ban_base_s * 2**client.bans)
            client.bans += 1
            client.banned_until = now + ban
            client.limited_until = 0.0
            return self._banned(client, now)
        client.used += weight
        if client.used > self.limit:
            client.limited_until = (window + 1) * self.window_s
            retry = max(1, math.ceil(client.limited_until - now))
            return Decision(429, client.used, retry)
        return Decision(200, client.used)

    def _banned(self, client: _Client, now: float) -> Decision:
        retry = max(1, math.ceil(client.banned_until - now))
        return Decision(418, client.used, retry, int(client.banned_until * 1000))

    def clear(self) -> None:
        self._clients.clear()
