"""Plain pytest in the checkout: collections/ links the repository as ansible_collections/llmops/gpu_stack."""

import importlib.util
import pathlib
import sys

if importlib.util.find_spec("ansible_collections") is None or importlib.util.find_spec("ansible_collections.llmops") is None:
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "collections"))
