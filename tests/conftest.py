"""Plain pytest in the checkout: collections/ links the repository as ansible_collections/llmops/gpu_stack."""

import importlib.util
import pathlib
import sys

if importlib.util.find_spec("ansible_collections") is None or importlib.util.find_spec("ansible_collections.llmops") is None:
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "collections"))

# The longest test files first (measured in the suite, docs/performance.md): with `pytest -n 2
# --dist loadfile` each file runs on one worker, so starting the long ones first keeps both workers
# busy to the end; test_vllm_engine.py also builds the vLLM image that molecule uses (minutes on a
# cold machine). Files not named here keep their order after these.
LONGEST_FIRST = (
    "tests/integration/test_vllm_engine.py",
    "tests/integration/test_stack_render.py",
    "tests/integration/test_nvidia_container_toolkit.py",
    "tests/integration/test_validation.py",
)


def pytest_collection_modifyitems(items):
    def rank(item):
        path = item.nodeid.split("::", 1)[0]
        return LONGEST_FIRST.index(path) if path in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: the order inside a file and among the others stays
