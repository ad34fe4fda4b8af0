"""vLLM tests run only where LUDUS_VLLM_PYTHON names a Python with vLLM (scripts/vllm_env.sh)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from modelhub.zoo.testing import cached_quick_zoo


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "vllm: needs a vLLM install (LUDUS_VLLM_PYTHON)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    python = os.environ.get("LUDUS_VLLM_PYTHON", "")
    if python and Path(python).exists():
        return
    skip = pytest.mark.skip(reason="LUDUS_VLLM_PYTHON is not set to a Python with vLLM")
    for item in items:
        if "vllm" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def zoo_dir() -> Path:
    torch.set_num_threads(1)
    return cached_quick_zoo()
