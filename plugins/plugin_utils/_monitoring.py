# -*- coding: utf-8 -*-
# Copyright: llmops.gpu_stack contributors
# Apache License 2.0 (see LICENSE)
"""prometheus.yml of a gateway host: itself, its gateway, every engine it routes to, the guard.

Note that this plugin util is **PRIVATE** to the collection. It can have breaking changes at any time.
Do not use this from other collections or standalone plugins/modules!

Every target carries the label ``llmops_host`` (the inventory host) and engines also ``engine``
(the Compose service), so dashboards and alerts can tell the engines of one host apart.
"""

from __future__ import annotations

from ansible_collections.llmops.gpu_stack.plugins.plugin_utils._topology import url_host


def prometheus_config(*, host, scrape_interval, gateways, engines, guard=None) -> dict:
    """``gateways``: [(host, target)]; ``engines``: [(host, engine name, target)] (target = host:port)."""
    jobs = [{
        "job_name": "litellm-proxy",
        # /metrics answers 307 to /metrics/; LiteLLM serves it without a key (require_auth_for_metrics_endpoint: false).
        "metrics_path": "/metrics/",
        "static_configs": [{"targets": [target], "labels": {"llmops_host": name}} for name, target in gateways],
    }]
    seen = set()
    static = []
    for name, engine, target in engines:
        if target in seen:
            continue
        seen.add(target)
        static.append({"targets": [target], "labels": {"llmops_host": name, "engine": engine}})
    jobs.append({"job_name": "inference-engine", "metrics_path": "/metrics", "static_configs": static})
    if guard:
        jobs.append({"job_name": "moderation-engine", "metrics_path": "/metrics", "static_configs": [
            {"targets": ["%s:%d" % (guard["name"], guard["port"])], "labels": {"llmops_host": host, "engine": guard["name"]}}]})
    jobs.append({"job_name": "prometheus", "static_configs": [{"targets": ["localhost:9090"], "labels": {"llmops_host": host}}]})
    return {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval,
                   "external_labels": {"host": host}},
        "rule_files": ["/etc/prometheus/rules/*.yml"],
        "scrape_configs": jobs,
    }


def target(address, port) -> str:
    return "%s:%d" % (url_host(str(address)), int(port))
