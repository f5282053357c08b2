"""Fixtures of the edge tests (defined in edge_testkit, next to the helpers)."""

from edge_testkit import edge_topics, subscriber_factory, sysfs

__all__ = ["edge_topics", "subscriber_factory", "sysfs"]
