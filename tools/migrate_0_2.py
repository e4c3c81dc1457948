"""Variable names of llmops.gpu_stack 0.1.0 and their 0.2.0 successors (docs/migration-0.2.md).

    python3 tools/migrate_0_2.py table            # the Markdown table of docs/migration-0.2.md
    python3 tools/migrate_0_2.py rewrite FILE...  # rename the variables in inventory files, in place
    python3 tools/migrate_0_2.py check FILE...    # exit 1 and list the 0.1.0 names still used

``rewrite`` replaces whole variable names only (word boundaries), so comments and values that
mention a name are renamed too; review the diff. Names with no successor are listed, not changed.
"""

from __future__ import annotations

import re
import sys

# old name -> (new name or None, note)
RENAMES = {
    # model_store's shared settings -> _common
    "model_store_stack_root": ("gpu_stack_root", ""),
    "model_store_models_root": ("gpu_stack_models_root", ""),
    "model_store_models": ("gpu_stack_models", "per-model engine: settings move to inference_engine_engines entries"),
    "model_store_prometheus_uid": ("monitoring_uid", "one owner of data/prometheus: the monitoring role"),
    "model_store_prometheus_gid": ("monitoring_gid", ""),
    # llm_stack -> _common
    "llm_stack_accelerator": ("gpu_stack_accelerator", ""),
    "llm_stack_project_name": ("gpu_stack_project_name", ""),
    "llm_stack_inference_group": ("gpu_stack_inference_group", ""),
    "llm_stack_gateway_group": ("gpu_stack_gateway_group", ""),
    "llm_stack_address": ("gpu_stack_address", ""),
    "llm_stack_firewall": ("gpu_stack_firewall", "now on by default wherever a port is published for other hosts"),
    "llm_stack_registry": ("gpu_stack_registry", ""),
    "llm_stack_pull": ("gpu_stack_pull", ""),
    "llm_stack_image_tarballs": ("gpu_stack_image_tarballs", ""),
    "llm_stack_validate": ("gpu_stack_validate", ""),
    "llm_stack_start": ("gpu_stack_start", ""),
    "llm_stack_wait_timeout": ("gpu_stack_wait_timeout", ""),
    "llm_stack_verify_timeout": ("gpu_stack_verify_timeout", ""),
    "llm_stack_teardown_purge": ("gpu_stack_teardown_purge", "also removes secrets/ (0.1.0: .env)"),
    "llm_stack_teardown_purge_models": ("gpu_stack_teardown_purge_models", ""),
    # llm_stack -> inference_engine
    "llm_stack_engine_version": ("inference_engine_version", ""),
    "llm_stack_engine_cuda_suffix": ("inference_engine_cuda_suffix", ""),
    "llm_stack_engine_gpu_image": (None, "set inference_engine_image (\"\" picks the GPU or CPU image of inference_engine_version)"),
    "llm_stack_engine_cpu_image": (None, "set inference_engine_image"),
    "llm_stack_engine_image": ("inference_engine_image", "\"\" = the upstream image of inference_engine_version"),
    "llm_stack_engine_model": ("inference_engine_model", ""),
    "llm_stack_engine_port": ("inference_engine_port", ""),
    "llm_stack_engine_gpus": ("inference_engine_gpus", ""),
    "llm_stack_engine_tensor_parallel_size": ("inference_engine_tensor_parallel_size", ""),
    "llm_stack_engine_gpu_memory_utilization": ("inference_engine_gpu_memory_utilization", ""),
    "llm_stack_engine_max_model_len": ("inference_engine_max_model_len", ""),
    "llm_stack_engine_dtype": ("inference_engine_dtype", "auto is bfloat16 on the CPU profile"),
    "llm_stack_engine_ipc_host": ("inference_engine_ipc_host", ""),
    "llm_stack_engine_shm_size": ("inference_engine_shm_size", ""),
    "llm_stack_engine_cpu_kvcache_space": ("inference_engine_cpu_kvcache_space", ""),
    "llm_stack_engine_extra_args": ("inference_engine_extra_args", ""),
    "llm_stack_engine_env": ("inference_engine_env", ""),
    "llm_stack_engine_health_start_period": ("inference_engine_health_start_period", ""),
    "llm_stack_engine_publish": ("inference_engine_publish", ""),
    "llm_stack_engine_publish_address": ("inference_engine_publish_address", ""),
    "llm_stack_engine_bind_address": ("inference_engine_bind_address", ""),
    "llm_stack_engine_allowed_sources": ("inference_engine_allowed_sources", ""),
    "llm_stack_gpu_check": ("inference_engine_gpu_check", ""),
    "llm_stack_engine_api_key": ("inference_engine_api_key", ""),
    "llm_stack_rolling_drain_seconds": ("inference_engine_drain_seconds", ""),
    "llm_stack_rolling_drain_timeout": ("inference_engine_drain_timeout", ""),
    "llm_stack_rolling_resume_timeout": ("inference_engine_resume_timeout", ""),
    # llm_stack -> gateway
    "llm_stack_litellm_version": ("gateway_litellm_version", ""),
    "llm_stack_litellm_image": ("gateway_litellm_image", "\"\" = ghcr.io/berriai/litellm:v<gateway_litellm_version>"),
    "llm_stack_redis_image": ("gateway_redis_image", ""),
    "llm_stack_litellm_port": ("gateway_port", ""),
    "llm_stack_litellm_bind_address": ("gateway_bind_address", ""),
    "llm_stack_litellm_num_workers": ("gateway_num_workers", ""),
    "llm_stack_litellm_max_requests_before_restart": ("gateway_max_requests_before_restart", ""),
    "llm_stack_litellm_routing_strategy": ("gateway_routing_strategy", ""),
    "llm_stack_litellm_num_retries": ("gateway_num_retries", ""),
    "llm_stack_litellm_timeout": ("gateway_timeout", ""),
    "llm_stack_litellm_allowed_fails": ("gateway_allowed_fails", ""),
    "llm_stack_litellm_cooldown_time": ("gateway_cooldown_time", ""),
    "llm_stack_litellm_deployment_allowed_fails": ("gateway_deployment_allowed_fails", "applies to every alias with several engines"),
    "llm_stack_litellm_fallbacks": ("gateway_fallbacks", ""),
    "llm_stack_litellm_extra_models": ("gateway_extra_models", ""),
    "llm_stack_litellm_cache_enabled": ("gateway_cache_enabled", ""),
    "llm_stack_litellm_cache_ttl": ("gateway_cache_ttl", ""),
    "llm_stack_litellm_settings_extra": ("gateway_litellm_settings", ""),
    "llm_stack_router_settings_extra": ("gateway_router_settings", ""),
    "llm_stack_general_settings_extra": ("gateway_general_settings", ""),
    "llm_stack_redis_publish": ("gateway_redis_publish", ""),
    "llm_stack_redis_publish_address": ("gateway_redis_publish_address", ""),
    "llm_stack_redis_host": ("gateway_redis_host", ""),
    "llm_stack_redis_port": ("gateway_redis_port", ""),
    "llm_stack_litellm_master_key": ("gateway_master_key", ""),
    "llm_stack_redis_password": ("gateway_redis_password", ""),
    # llm_stack -> monitoring
    "llm_stack_prometheus_enabled": ("monitoring_enabled", ""),
    "llm_stack_prometheus_image": ("monitoring_prometheus_image", ""),
    "llm_stack_prometheus_port": ("monitoring_port", ""),
    "llm_stack_prometheus_bind_address": ("monitoring_bind_address", ""),
    "llm_stack_prometheus_retention": ("monitoring_retention", ""),
    "llm_stack_prometheus_scrape_interval": ("monitoring_scrape_interval", ""),
    "llm_stack_alert_queue_waiting_threshold": ("monitoring_alert_queue_waiting_threshold", ""),
    "llm_stack_alert_kv_cache_threshold": ("monitoring_alert_kv_cache_threshold", ""),
    # llm_stack -> moderation
    "llm_stack_moderation_enabled": ("moderation_enabled", ""),
    "llm_stack_moderation_alias": ("moderation_alias", ""),
    "llm_stack_moderation_image": ("moderation_image", "\"\" = the engines' image"),
    "llm_stack_moderation_action": ("moderation_action", ""),
    "llm_stack_moderation_screen_input": ("moderation_screen_input", ""),
    "llm_stack_moderation_screen_output": ("moderation_screen_output", ""),
    "llm_stack_moderation_screen_stream": ("moderation_screen_stream", ""),
    "llm_stack_moderation_on_error": ("moderation_on_error", ""),
    "llm_stack_moderation_controversial": ("moderation_controversial", ""),
    "llm_stack_moderation_timeout": ("moderation_timeout", ""),
    "llm_stack_moderation_port": ("moderation_port", ""),
    "llm_stack_moderation_gpus": ("moderation_gpus", ""),
    "llm_stack_moderation_gpu_memory_utilization": ("moderation_gpu_memory_utilization", ""),
    "llm_stack_moderation_max_model_len": ("moderation_max_model_len", ""),
    "llm_stack_moderation_extra_args": ("moderation_extra_args", ""),
    "llm_stack_moderation_env": ("moderation_env", ""),
    "llm_stack_moderation_health_start_period": ("moderation_health_start_period", ""),
    "llm_stack_moderation_probe_unsafe": ("moderation_probe_unsafe", ""),
    "llm_stack_moderation_probe_safe": ("moderation_probe_safe", ""),
    "llm_stack_moderation_api_key": ("moderation_api_key", ""),
    # nvidia_container_toolkit's Docker part -> docker_engine
    "nvidia_container_toolkit_docker_install": ("docker_engine_install", ""),
    "nvidia_container_toolkit_docker_source": ("docker_engine_source", ""),
    "nvidia_container_toolkit_docker_apt_repo_url": ("docker_engine_apt_repo_url", ""),
    "nvidia_container_toolkit_docker_apt_key_url": ("docker_engine_apt_key_url", ""),
    "nvidia_container_toolkit_docker_rpm_repo_url": ("docker_engine_rpm_repo_url", ""),
    "nvidia_container_toolkit_docker_rpm_key_url": ("docker_engine_rpm_key_url", ""),
    "nvidia_container_toolkit_docker_wait_timeout": ("docker_engine_wait_timeout", ""),
    "nvidia_container_toolkit_daemon_json_extra": ("docker_engine_daemon_options", ""),
}
_NAME = re.compile(r"\b(" + "|".join(sorted(RENAMES, key=len, reverse=True)) + r")\b")


def table() -> str:
    lines = ["| 0.1.0 | 0.2.0 | note |", "| --- | --- | --- |"]
    for old, (new, note) in RENAMES.items():
        shown = f"`{new}`" if new else "(none)"
        lines.append(f"| `{old}` | {shown} | {note} |")
    return "\n".join(lines)


def rewrite(text: str) -> tuple[str, list]:
    dropped = []

    def swap(match):
        new, _note = RENAMES[match.group(1)]
        if new is None:
            dropped.append(match.group(1))
            return match.group(1)
        return new

    return _NAME.sub(swap, text), dropped


def main(argv) -> int:
    if not argv or argv[0] not in ("table", "rewrite", "check"):
        print(__doc__)
        return 2
    if argv[0] == "table":
        print(table())
        return 0
    status = 0
    for path in argv[1:]:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
        if argv[0] == "check":
            found = sorted(set(_NAME.findall(text)))
            if found:
                status = 1
                print(f"{path}: {', '.join(found)}")
            continue
        new, dropped = rewrite(text)
        if new != text:
            with open(path, "w", encoding="utf-8") as handle:
                handle.write(new)
            print(f"{path}: rewritten")
        for name in sorted(set(dropped)):
            print(f"{path}: {name} has no successor: {RENAMES[name][1]}")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
