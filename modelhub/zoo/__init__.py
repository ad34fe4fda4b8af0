"""Ludus demo model zoo: a generated corpus, a BPE tokenizer, small Llama chat models and a tiny
LLaVA vision model, all trained on CPU in minutes and saved in Hugging Face format.

Django-free: usable from the command line (``python -m modelhub.zoo build --out DIR``), from tests
and from the ``build_demo_models`` management command.
"""

from modelhub.zoo.build import build_zoo, load_manifest

__all__ = ["build_zoo", "load_manifest"]
