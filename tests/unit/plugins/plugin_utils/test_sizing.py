"""plugins/plugin_utils/_sizing.py: tensor-parallel size, KV bytes per token, memory estimate and fit check."""

from __future__ import annotations

import importlib.util
import pathlib
import sys

import pytest

if importlib.util.find_spec("ansible_collections.llmops") is None:  # plain pytest in the checkout: collections/ links the repo
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[4] / "collections"))

from ansible_collections.llmops.gpu_stack.plugins.plugin_utils import _sizing as sizing

QWEN3_8B_WEIGHTS = 16_400_000_000
QWEN3_8B_KV = 2 * 36 * 8 * 128 * 2  # 147456 bytes = 144 KiB per token


# --- tensor_parallel_size ----------------------------------------------------------------------

@pytest.mark.parametrize(("count", "size"), [(1, 1), (2, 2), (3, 2), (4, 4), (5, 4), (6, 4), (7, 4), (8, 8), (12, 8), (16, 16), ("4", 4), (8.0, 8)])
def test_tensor_parallel_size_is_largest_power_of_two(count, size):
    assert sizing.tensor_parallel_size(count) == size


@pytest.mark.parametrize(("count", "heads", "size"), [(8, 32, 8), (8, 40, 8), (8, 20, 4), (8, 12, 4), (8, 7, 1), (4, 64, 4), (3, 1, 1)])
def test_tensor_parallel_size_divides_the_attention_heads(count, heads, size):
    assert sizing.tensor_parallel_size(count, heads) == size
    assert heads % size == 0


@pytest.mark.parametrize("count", [0, -2, "x", None, True, 2.5])
def test_tensor_parallel_size_rejects_bad_counts(count):
    with pytest.raises(ValueError, match="gpu_count"):
        sizing.tensor_parallel_size(count)


def test_tensor_parallel_size_rejects_bad_heads():
    with pytest.raises(ValueError, match="num_attention_heads"):
        sizing.tensor_parallel_size(4, 0)


# --- model_fits (field notes: Qwen3-8B BF16 16.4 GB weights, 144 KiB KV per token) -----------

def test_qwen3_8b_fits_an_h100_with_full_context():
    assert sizing.model_fits(81559, QWEN3_8B_WEIGHTS, kv_bytes_per_token=QWEN3_8B_KV, max_model_len=40960)


def test_qwen3_8b_on_24_gb_fits_32k_but_not_40k():
    estimate = sizing.model_memory_estimate(24564, QWEN3_8B_WEIGHTS, kv_bytes_per_token=QWEN3_8B_KV, max_model_len=32768)
    assert estimate["fits"]
    assert estimate["kv_cache_bytes"] == 32768 * 147456  # 4.5 GiB
    assert estimate["required_gib"] == pytest.approx(21.77, abs=0.01)
    assert not sizing.model_fits(24564, QWEN3_8B_WEIGHTS, kv_bytes_per_token=QWEN3_8B_KV, max_model_len=40960)


def test_qwen3_8b_never_fits_16_gb():
    assert not sizing.model_fits(16376, QWEN3_8B_WEIGHTS, kv_bytes_per_token=QWEN3_8B_KV, max_model_len=1024)
    assert not sizing.model_fits(16376, QWEN3_8B_WEIGHTS, max_model_len=None)


def test_tensor_parallel_adds_memory_and_overhead_per_gpu():
    estimate = sizing.model_memory_estimate(16376, QWEN3_8B_WEIGHTS, kv_bytes_per_token=QWEN3_8B_KV, max_model_len=32768,
                                            tensor_parallel_size=2)
    assert estimate["fits"]
    assert estimate["overhead_bytes"] == 2 * sizing.DEFAULT_OVERHEAD_BYTES
    assert estimate["available_bytes"] == int(16376 * sizing.MIB * 0.92 * 2)


def test_utilization_and_overhead_are_honoured():
    tight = dict(kv_bytes_per_token=QWEN3_8B_KV, max_model_len=32768)
    assert sizing.model_fits(24564, QWEN3_8B_WEIGHTS, gpu_memory_utilization=0.92, **tight)
    assert not sizing.model_fits(24564, QWEN3_8B_WEIGHTS, gpu_memory_utilization=0.9, **tight)
    assert not sizing.model_fits(24564, QWEN3_8B_WEIGHTS, overhead_bytes=3 * sizing.GIB, **tight)


@pytest.mark.parametrize("length", [None, "auto", ""])
def test_auto_context_counts_no_kv_cache(length):
    estimate = sizing.model_memory_estimate(24564, QWEN3_8B_WEIGHTS, kv_bytes_per_token=QWEN3_8B_KV, max_model_len=length)
    assert estimate["kv_cache_bytes"] == 0 and estimate["fits"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"gpu_memory_utilization": 0}, "gpu_memory_utilization"),
        ({"gpu_memory_utilization": 1.5}, "gpu_memory_utilization"),
        ({"tensor_parallel_size": 0}, "tensor_parallel_size"),
        ({"max_model_len": 0}, "max_model_len"),
        ({"max_model_len": "long"}, "max_model_len"),
        ({"kv_bytes_per_token": -1}, "kv_bytes_per_token"),
        ({"overhead_bytes": "x"}, "overhead_bytes"),
    ],
)
def test_model_fits_rejects_bad_input(kwargs, message):
    with pytest.raises(ValueError, match=message):
        sizing.model_memory_estimate(81559, QWEN3_8B_WEIGHTS, **kwargs)


@pytest.mark.parametrize(("memory", "weights"), [(-1, 1), ("lots", 1), (1, -5), (1, True)])
def test_model_fits_rejects_bad_sizes(memory, weights):
    with pytest.raises(ValueError):
        sizing.model_fits(memory, weights)


# --- kv_bytes_per_token (was Jinja in roles/llm_stack/tasks/gpus.yml) --------------------------

# The sizing keys of Qwen3-8B's config.json
QWEN3_8B_CONFIG = {"architectures": ["Qwen3ForCausalLM"], "hidden_size": 4096, "head_dim": 128, "num_attention_heads": 32,
                   "num_hidden_layers": 36, "num_key_value_heads": 8, "torch_dtype": "bfloat16"}


def test_kv_bytes_per_token_of_qwen3_8b():
    assert sizing.kv_bytes_per_token(QWEN3_8B_CONFIG) == QWEN3_8B_KV == 147456
    assert sizing.kv_bytes_per_token(QWEN3_8B_CONFIG, bytes_per_value=1) == QWEN3_8B_KV // 2


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        # no head_dim: hidden_size // num_attention_heads (Llama-2-7B: 4096 / 32 = 128, no GQA)
        ({"hidden_size": 4096, "num_attention_heads": 32, "num_hidden_layers": 32}, 2 * 32 * 32 * 128 * 2),
        # a null head_dim is absent too (the Jinja gave 0 for it)
        ({"hidden_size": 4096, "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8, "head_dim": None},
         2 * 32 * 8 * 128 * 2),
        # head_dim given and not hidden_size / heads (Qwen3-0.6B: hidden 1024, 16 heads, head_dim 128)
        ({"hidden_size": 1024, "num_attention_heads": 16, "num_hidden_layers": 28, "num_key_value_heads": 8, "head_dim": 128},
         2 * 28 * 8 * 128 * 2),
        # counts as strings or integral floats
        ({"hidden_size": "4096", "num_attention_heads": 32.0, "num_hidden_layers": "36", "num_key_value_heads": 8}, 2 * 36 * 8 * 128 * 2),
        # a multimodal config keeps the language model under text_config
        ({"architectures": ["Qwen3VLForConditionalGeneration"], "text_config": QWEN3_8B_CONFIG}, QWEN3_8B_KV),
    ],
)
def test_kv_bytes_per_token_defaults(config, expected):
    assert sizing.kv_bytes_per_token(config) == expected


@pytest.mark.parametrize("config", [{}, {"hidden_size": 4096}, {"num_hidden_layers": 36, "hidden_size": 4096}])
def test_kv_bytes_per_token_is_0_without_the_figures(config):
    """No config.json (or one without the counts): 0, and the fit check counts no KV cache."""
    assert sizing.kv_bytes_per_token(config) == 0


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ([], "config must be a mapping"),
        (None, "config must be a mapping"),
        ({"num_hidden_layers": "many"}, "config.json num_hidden_layers must be an integer"),
        ({"num_hidden_layers": 36, "num_key_value_heads": -8}, "config.json num_key_value_heads must be >= 0"),
        ({"num_hidden_layers": 36, "head_dim": 12.5}, "config.json head_dim must be a whole number"),
        ({"num_hidden_layers": 36, "num_attention_heads": True}, "config.json num_attention_heads must be an integer"),
    ],
)
def test_kv_bytes_per_token_rejects_bad_configs(config, message):
    with pytest.raises(ValueError, match=message):
        sizing.kv_bytes_per_token(config)


# --- model_fits with the nvidia_gpu_info result ----------------------------------------------

GPU_INFO = {"gpu_count": 2, "gpus": [{"index": 0, "memory_total_mib": 81559}, {"index": 1, "memory_total_mib": 24564}]}


def test_per_gpu_memory_is_a_number_or_the_smallest_gpu():
    assert sizing.per_gpu_memory_mib(81559) == 81559
    assert sizing.per_gpu_memory_mib(GPU_INFO) == 24564
    assert sizing.per_gpu_memory_mib({"gpus": [{"memory_total_mib": None}, {"memory_total_mib": 1024}, "odd"]}) == 1024


@pytest.mark.parametrize("gpu_info", [{"gpus": []}, {}, {"gpus": [{"memory_total_mib": None}]}])
def test_per_gpu_memory_needs_a_gpu(gpu_info):
    with pytest.raises(ValueError, match="the nvidia_gpu_info result lists no GPU memory"):
        sizing.per_gpu_memory_mib(gpu_info)


def test_model_fits_takes_the_module_result_and_gives_details():
    kwargs = dict(kv_bytes_per_token=QWEN3_8B_KV, max_model_len=40960)
    assert sizing.model_fits(GPU_INFO, QWEN3_8B_WEIGHTS, **kwargs) is False
    estimate = sizing.model_fits(GPU_INFO, QWEN3_8B_WEIGHTS, tensor_parallel_size=2, details=True, **kwargs)
    assert estimate == sizing.model_memory_estimate(24564, QWEN3_8B_WEIGHTS, tensor_parallel_size=2, **kwargs)
    assert set(estimate) == {"fits", "required_bytes", "available_bytes", "weights_bytes", "kv_cache_bytes", "overhead_bytes",
                             "required_gib", "available_gib"}
    assert estimate["fits"] is True


def test_sizing_chain_for_qwen3_8b_on_two_24_gb_gpus():
    """What _engines.py does: TP from the GPU count and heads, KV from config.json, then the fit."""
    tp = sizing.tensor_parallel_size(2, QWEN3_8B_CONFIG["num_attention_heads"])
    fit = sizing.model_fits(24564, QWEN3_8B_WEIGHTS, kv_bytes_per_token=sizing.kv_bytes_per_token(QWEN3_8B_CONFIG),
                            max_model_len=40960, tensor_parallel_size=tp, details=True)
    assert tp == 2 and fit["fits"] and fit["kv_cache_bytes"] == 40960 * 147456
