"""Short-term memory: per `session_id`, the last turns and the slots they resolved.

A client may send only its last message plus `puls.session_id`; the service then reads the
earlier turns from here and merges slots exactly as it does for a request's own history
(`serving/memory/slots.py`). Entries expire after `session_ttl_s` (24 h by default) and
belong to the `user` that wrote them: another user's request never reads them.

Keys::

    {prefix}:session:{session_id}     JSON SessionState
    {prefix}:user:{user}:sessions     set of that user's session ids (erasure)
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from serving.memory.kv import Guarded, KeyValueStore


@dataclass(frozen=True)
class SessionState:
    """What a session remembers: its user turns (oldest first), last slots, last position."""

    user: str | None
    turns: list[str]
    slots: dict[str, object] = field(default_factory=dict)
    location: tuple[float, float] | None = None

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), ensure_ascii=False).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> SessionState:
        data = json.loads(raw)
        location = data.get("location")
        return cls(
            user=data.get("user"),
            turns=[str(t) for t in data.get("turns", [])],
            slots=dict(data.get("slots", {})),
            location=(float(location[0]), float(location[1])) if location else None,
        )


class SessionMemory:
    """Reads and writes sessions through a guarded store: an outage means no memory."""

    def __init__(self, store: Guarded, prefix: str, ttl_s: float, max_turns: int) -> None:
        self.store = store
        self.prefix = prefix
        self.ttl_s = ttl_s
        self.max_turns = max_turns

    def _key(self, session_id: str) -> str:
        return f"{self.prefix}:session:{session_id}"

    def _user_key(self, user: str) -> str:
        return f"{self.prefix}:user:{user}:sessions"

    async def load(self, session_id: str, user: str | None) -> SessionState | None:
        """The session, or None when absent, expired, unreadable or another user's."""
        raw = await self.store.call(lambda kv: kv.get(self._key(session_id)), None)
        if raw is None:
            return None
        state = SessionState.from_json(raw)
        return state if state.user == user else None

    async def remember(self, session_id: str, state: SessionState) -> None:
        """Keep the last `max_turns` turns; the TTL restarts with every turn."""
        bounded = SessionState(
            state.user, state.turns[-self.max_turns :], state.slots, state.location
        )

        async def write(kv: KeyValueStore) -> None:
            await kv.put(self._key(session_id), bounded.to_json(), self.ttl_s)
            if state.user:
                await kv.sadd(self._user_key(state.user), session_id, self.ttl_s)

        await self.store.call(write, None)

    async def forget_user(self, user: str) -> int:
        """Delete every session of `user`; returns how many were found."""

        async def erase(kv: KeyValueStore) -> int:
            ids = await kv.smembers(self._user_key(user))
            await kv.delete(*(self._key(i) for i in ids), self._user_key(user))
            return len(ids)

        return await self.store.call(erase, 0)
