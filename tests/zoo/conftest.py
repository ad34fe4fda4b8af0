"""A quick zoo built once per session (cached under data/test-zoo by source hash)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from modelhub.zoo.testing import cached_quick_zoo


@pytest.fixture(scope="session")
def zoo_dir() -> Path:
    torch.set_num_threads(1)
    return cached_quick_zoo()
