"""Short-term memory: per `session_id`, the last turns and the slots they resolved.

A client may send only its last message plus `puls.session_id`; the service then reads the
earlier turns from here and merges slots exactly as it does for a request's own history
(`serving/memory/slots.py`). Entries expire after `session_ttl_s` (24 h by default) and
belong to the `user` that wrote them: another user's request never reads them.

Everything is bounded: the last `max_turns` user turns (the sliding window the parser sees;
the LLM is only ever told the last question, docs/adr/0004), the slots of the last answer, a
one-line summary of them ("Vous cherchiez : concerts à Valence, ce week-end", returned in the
response's `puls` extension), and, per answer, the cities and themes it resolved (the last
`max_turns` of them), which `puls memory consolidate` counts into opted-in profiles.

Keys::

    {prefix}:session:{session_id}     JSON SessionState
    {prefix}:user:{user}:sessions     set of that user's session ids (erasure)
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace

from serving.memory.kv import Guarded, KeyValueStore


@dataclass(frozen=True)
class SessionState:
    """What a session remembers: its user turns (oldest first), last slots, last position,
    the summary of those slots, and what each recent answer resolved (oldest first)."""

    user: str | None
    turns: list[str]
    slots: dict[str, object] = field(default_factory=dict)
    location: tuple[float, float] | None = None
    summary: str = ""
    history: list[dict[str, list[str]]] = field(default_factory=list)

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
            summary=str(data.get("summary", "")),
            history=[
                {k: [str(v) for v in values] for k, values in dict(turn).items()}
                for turn in data.get("history", [])
            ],
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
        """Keep the last `max_turns` turns; `state.history` (this answer's) is appended to the
        stored one, bounded the same way; the TTL restarts with every turn."""

        async def write(kv: KeyValueStore) -> None:
            raw = await kv.get(self._key(session_id))
            before = SessionState.from_json(raw) if raw is not None else None
            history = before.history if before is not None and before.user == state.user else []
            bounded = replace(
                state,
                turns=state.turns[-self.max_turns :],
                history=[*history, *state.history][-self.max_turns :],
            )
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

    async def of_user(self, user: str) -> list[SessionState]:
        """The live sessions of `user` (consolidation); empty while the store is down."""

        async def read(kv: KeyValueStore) -> list[SessionState]:
            ids = sorted(await kv.smembers(self._user_key(user)))
            raws = [await kv.get(self._key(i)) for i in ids]
            states = [SessionState.from_json(r) for r in raws if r is not None]
            return [s for s in states if s.user == user]

        return await self.store.call(read, [])
