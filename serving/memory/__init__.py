"""Short-term memory (sessions), the key-value stores under it, and conversation slots."""

from serving.memory.context import PRINCIPAL, REQUEST_ID, RequestContextVars, parse_key_users
from serving.memory.kv import Guarded, KeyValueStore, MemoryKV, RedisKV, open_kv
from serving.memory.sessions import SessionMemory, SessionState
from serving.memory.slots import Slots, conversation_query, slots_of
from serving.memory.sql import SqlStore, StoreUnavailable

__all__ = [
    "PRINCIPAL",
    "REQUEST_ID",
    "Guarded",
    "KeyValueStore",
    "MemoryKV",
    "RedisKV",
    "RequestContextVars",
    "SessionMemory",
    "SessionState",
    "Slots",
    "SqlStore",
    "StoreUnavailable",
    "conversation_query",
    "open_kv",
    "parse_key_users",
    "slots_of",
]
