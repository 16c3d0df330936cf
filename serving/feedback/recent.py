"""A short record of recent answers, keyed by `x-request-id`, so feedback can say what it rates.

Kept in this process (bounded) and in the memory store (shared by replicas, `ttl_s`); a
feedback request finds the record in either.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import asdict, dataclass

from serving.memory.kv import Guarded, KeyValueStore

LOCAL_RECORDS = 2048


@dataclass(frozen=True)
class RequestRecord:
    """What an answer was: the question, the events it cited, the engine, the time it took."""

    request_id: str
    query: str
    cited_uids: list[str]
    model: str
    latency_ms: float
    user: str | None


class RecentRequests:
    def __init__(self, store: Guarded, prefix: str, ttl_s: float) -> None:
        self.store = store
        self.prefix = prefix
        self.ttl_s = ttl_s
        self._local: OrderedDict[str, RequestRecord] = OrderedDict()

    def _key(self, request_id: str) -> str:
        return f"{self.prefix}:request:{request_id}"

    def _user_key(self, user: str) -> str:
        return f"{self.prefix}:user:{user}:requests"

    async def add(self, record: RequestRecord) -> None:
        self._local[record.request_id] = record
        while len(self._local) > LOCAL_RECORDS:
            self._local.popitem(last=False)

        async def write(kv: KeyValueStore) -> None:
            await kv.put(self._key(record.request_id), json.dumps(asdict(record)).encode(),
                         self.ttl_s)  # fmt: skip
            if record.user:
                await kv.sadd(self._user_key(record.user), record.request_id, self.ttl_s)

        await self.store.call(write, None)

    async def get(self, request_id: str) -> RequestRecord | None:
        if request_id in self._local:
            return self._local[request_id]
        raw = await self.store.call(lambda kv: kv.get(self._key(request_id)), None)
        return None if raw is None else RequestRecord(**json.loads(raw))

    async def forget_user(self, user: str) -> int:
        for request_id in [k for k, r in self._local.items() if r.user == user]:
            del self._local[request_id]

        async def erase(kv: KeyValueStore) -> int:
            ids = await kv.smembers(self._user_key(user))
            await kv.delete(*(self._key(i) for i in ids), self._user_key(user))
            return len(ids)

        return await self.store.call(erase, 0)
