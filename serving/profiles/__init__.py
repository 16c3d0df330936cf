"""Long-term memory: opt-in user profiles, who may touch them, how they bias ranking."""

from serving.profiles.access import Forbidden, NotFound, require_owner
from serving.profiles.bias import biased, profile_bonus
from serving.profiles.store import Profile, ProfileIn, ProfileStore

__all__ = [
    "Forbidden",
    "NotFound",
    "Profile",
    "ProfileIn",
    "ProfileStore",
    "biased",
    "profile_bonus",
    "require_owner",
]
