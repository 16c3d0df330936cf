"""Feedback on answers, and the record of recent answers it is joined with."""

from serving.feedback.recent import RecentRequests, RequestRecord
from serving.feedback.store import FeedbackIn, FeedbackStore

__all__ = ["FeedbackIn", "FeedbackStore", "RecentRequests", "RequestRecord"]
