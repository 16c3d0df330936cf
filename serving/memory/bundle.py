"""Everything the memory features need, opened once in the app's lifespan.

Session memory, the semantic cache and the recent-request record share one key-value store
(Redis, or this process); profiles and feedback share one SQL database (`PULS_DATABASE_URL`,
or `PULS_PROFILE_DATABASE_URL` to keep them apart from the events). Either may be down:
chat then answers without them (see `Guarded`, `SqlStore`).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from retrieval.search import Retriever
from serving.cache import DataVersion, SemanticCache
from serving.feedback.recent import RecentRequests
from serving.feedback.store import FeedbackStore
from serving.memory.kv import Guarded, open_kv
from serving.memory.sessions import SessionMemory
from serving.memory.sql import StoreUnavailable
from serving.metrics import Metrics
from serving.profiles.store import Profile, ProfileStore
from serving.settings import ServingSettings

log = logging.getLogger(__name__)


@dataclass
class MemoryServices:
    guard: Guarded
    sessions: SessionMemory
    cache: SemanticCache | None
    data_version: DataVersion
    recent: RecentRequests
    profiles: ProfileStore
    feedback: FeedbackStore

    async def profile_for(self, user: str | None) -> Profile | None:
        """The user's profile, or None (no user, no profile, or the database is down)."""
        if not user:
            return None
        try:
            return await asyncio.to_thread(self.profiles.get, user)
        except StoreUnavailable as exc:
            log.warning("profile store unavailable, answering without the profile: %s", exc)
            return None

    async def erase_user(self, user: str) -> dict[str, int]:
        """Everything stored about `user`: profile, feedback, sessions, cache, request records.

        Raises `StoreUnavailable` if the database is down (nothing is then half-erased in SQL;
        the Redis side is retried by the next DELETE).
        """
        profile = await asyncio.to_thread(self.profiles.delete, user)
        feedback = await asyncio.to_thread(self.feedback.delete_user, user)
        sessions = await self.sessions.forget_user(user)
        cache = await self.cache.forget_user(user) if self.cache else 0
        requests = await self.recent.forget_user(user)
        return {"profile": profile, "feedback": feedback, "sessions": sessions,
                "cache_entries": cache, "requests": requests}  # fmt: skip

    async def aclose(self) -> None:
        await self.guard.store.aclose()
        self.profiles.close()
        self.feedback.close()


def build_memory(
    settings: ServingSettings, retriever: Retriever, database_url: str, metrics: Metrics
) -> MemoryServices:
    redis_url = settings.memory_redis_url or settings.redis_url
    guard = Guarded(open_kv(redis_url), on_change=metrics.memory_store_changed)
    prefix = settings.memory_key_prefix
    cache = None
    if settings.cache_enabled:
        cache = SemanticCache(
            guard, prefix, settings.cache_ttl_s, settings.cache_similarity,
            embed=retriever.query_vector,  # the search's LRU: one embedding per question
        )  # fmt: skip
    sql_url = settings.profile_database_url or database_url
    return MemoryServices(
        guard=guard,
        sessions=SessionMemory(guard, prefix, settings.session_ttl_s, settings.session_max_turns),
        cache=cache,
        data_version=DataVersion(retriever.events, settings.cache_data_version_refresh_s),
        recent=RecentRequests(guard, prefix, settings.recent_request_ttl_s),
        profiles=ProfileStore(sql_url),
        feedback=FeedbackStore(sql_url),
    )
