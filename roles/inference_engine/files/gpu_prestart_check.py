"""GPU pre-start check of a vLLM engine: run inside the engine's own image with the engine's own GPU
request (``docker compose run --no-deps <engine>``), before the stack waits minutes on a healthcheck.

    python3 gpu_prestart_check.py --expect N

Prints one JSON line: {"ok": bool, "expected": N, "visible": n, "gpus": [names], "cuda": "<torch's CUDA>",
"error": "...", "hint": "..."}; exits 0 when N GPUs are visible and CUDA initialises, 1 otherwise.
Standard library plus the image's own torch. The check logic (``check``) takes the torch module as
an argument, so it is unit-tested with a fake one.
"""

import argparse
import json
import sys

HINTS = (
    ("803", "CUDA error 803 (system has unsupported display driver / cuda driver combination): the image's CUDA "
            "compatibility libraries were mixed with the host driver's. Request the GPUs with --gpus/device requests "
            "(the collection's default, runtime runc) rather than the nvidia runtime with NVIDIA_VISIBLE_DEVICES; see docs/gpu.md."),
    ("driver version is insufficient", "The host's NVIDIA driver is older than the CUDA of the image: use the -cu129 "
                                       "images (inference_engine_cuda_suffix) or upgrade the driver (>= 580 for CUDA 13)."),
    ("no CUDA GPUs are available", "No GPU reached the container: check the toolkit (nvidia-ctk), the GPU request "
                                   "(inference_engine_gpus / device ids) and that the GPUs are not hidden by NVIDIA_VISIBLE_DEVICES."),
    ("Found no NVIDIA driver", "No NVIDIA driver inside the container: the NVIDIA Container Toolkit did not inject it "
                               "(nvidia_container_toolkit role, docker info | grep -i runtime)."),
)


def hint_for(text):
    for needle, hint in HINTS:
        if needle.lower() in (text or "").lower():
            return hint
    return ""


def check(torch, expected):
    """The result dict for a torch module (or a fake with the same few attributes)."""
    result = {"ok": False, "expected": int(expected), "visible": 0, "gpus": [], "cuda": None, "error": "", "hint": ""}
    if torch is None:
        result["error"] = "torch is not importable in the engine image"
        return result
    result["cuda"] = getattr(getattr(torch, "version", None), "cuda", None)
    try:
        available = bool(torch.cuda.is_available())
        count = int(torch.cuda.device_count()) if available else 0
        result["visible"] = count
        if not available or count == 0:
            result["error"] = "no CUDA GPUs are available to the engine (torch.cuda.is_available() is False)"
        else:
            result["gpus"] = [str(torch.cuda.get_device_name(i)) for i in range(count)]
            # A real allocation: CUDA init errors (803 and friends) show up here, not in is_available().
            torch.zeros(1, device="cuda:0").add_(1)
            torch.cuda.synchronize()
    except Exception as err:  # noqa: BLE001 - every CUDA init failure must be reported, whatever its class
        result["error"] = f"{type(err).__name__}: {err}"
    if not result["error"] and result["visible"] < result["expected"]:
        result["error"] = f"the engine sees {result['visible']} GPU(s) but needs {result['expected']} (its tensor-parallel size)"
    result["hint"] = hint_for(result["error"]) if result["error"] else ""
    result["ok"] = not result["error"]
    return result


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--expect", type=int, default=1)
    args = parser.parse_args(argv)
    try:
        import torch  # noqa: PLC0415 - the engine image's own torch
    except Exception:  # noqa: BLE001
        torch = None
    result = check(torch, args.expect)
    print(json.dumps(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
