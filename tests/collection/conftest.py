from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.core.cache import cache


@pytest.fixture(autouse=True)
def _fresh_backlog() -> Iterator[None]:
    """The quest backlog is cached in Redis, which outlives each test's database: start every
    test with none cached."""
    from collection.selectors import BACKLOG_CACHE_KEY

    cache.delete(BACKLOG_CACHE_KEY)
    yield
    cache.delete(BACKLOG_CACHE_KEY)
