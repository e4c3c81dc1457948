"""Grafana dashboards of the LLM stack, generated from this file: the panels and their PromQL are data here,
the JSON files are its output (roles/monitoring/files/dashboards/, imported or provisioned as they are).

  python tools/dashboards.py           rewrite the JSON files
  python tools/dashboards.py --check   change nothing; exit 1 and name the stale files

Three dashboards, linked to each other (tag llm-stack) and sharing the time range and variables:
overview (the service as users see it), engine (vLLM per host, engine and model) and gateway (LiteLLM
per model, key and team). Variables: datasource (any Prometheus), host (llmops_host, the inventory
host the stack's Prometheus labels every target with), model and engine (vLLM's model_name and the
Compose service), alias (the gateway's requested_model). Metric names are those of the pinned vLLM and
LiteLLM (vLLM's current names: vllm:kv_cache_usage_perc, not the removed vllm:gpu_cache_usage_perc).

Every expression is checked by the suite: promtool parses it (tests/integration/test_dashboards.py)
and molecule/default runs it against the live stack's Prometheus after traffic
(molecule/default/tests/test_dashboards.py); panels in MAY_BE_EMPTY count events a healthy test
stack does not have (failures, fallbacks, cooldowns, preemptions). Standard library only.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
OUT = ROOT / "roles" / "monitoring" / "files" / "dashboards"
SCHEMA_VERSION = 39
TAG = "llm-stack"
DS = {"type": "prometheus", "uid": "${datasource}"}
RATE = "$__rate_interval"
QUANTILES = (("p50", "0.5"), ("p95", "0.95"), ("p99", "0.99"))
# Panels whose series exist only after an event a healthy test stack does not have.
MAY_BE_EMPTY = {
    "Failed requests by status", "Fallbacks", "Deployments cooled down", "Preemptions", "Gateway errors (share of requests)",
}

ENGINE_SEL = 'llmops_host=~"$host", engine=~"$engine", model_name=~"$model"'
HOST_SEL = 'llmops_host=~"$host"'
ALIAS_SEL = 'llmops_host=~"$host", requested_model=~"$alias"'
GROUP_SEL = 'llmops_host=~"$host", model_group=~"$alias"'


def _variable_datasource():
    return {"name": "datasource", "label": "Prometheus", "type": "datasource", "query": "prometheus", "current": {},
            "hide": 0, "refresh": 1, "options": [], "regex": ""}


def _variable_query(name, label, query, *, all_value=".*"):
    return {"name": name, "label": label, "type": "query", "datasource": DS,
            "definition": query, "query": {"query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
            "refresh": 2, "multi": True, "includeAll": True, "allValue": all_value, "current": {}, "options": [],
            "sort": 1, "hide": 0, "regex": ""}


VARIABLES = {
    "host": lambda: _variable_query("host", "Host", 'label_values(up{job=~"inference-engine|litellm-proxy"}, llmops_host)'),
    "model": lambda: _variable_query("model", "Model", "label_values(vllm:num_requests_running, model_name)"),
    "engine": lambda: _variable_query("engine", "Engine", 'label_values(vllm:num_requests_running{model_name=~"$model"}, engine)'),
    "alias": lambda: _variable_query("alias", "Alias", "label_values(litellm_proxy_total_requests_metric_total, requested_model)"),
}


def target(expr, legend, ref):
    return {"datasource": DS, "expr": expr, "legendFormat": legend, "refId": ref, "range": True, "editorMode": "code"}


def panel(title, description, exprs, *, unit="short", kind="timeseries", width=12, height=8):
    """exprs: [(expr, legend)]; the layout is filled in by dashboard()."""
    refs = "ABCDEFGH"
    out = {"type": kind, "title": title, "description": description, "datasource": DS,
           "targets": [target(e, legend, refs[i]) for i, (e, legend) in enumerate(exprs)],
           "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
           "gridPos": {"w": width, "h": height}}
    if kind == "timeseries":
        out["options"] = {"legend": {"displayMode": "table", "placement": "bottom", "calcs": ["mean", "max"]},
                          "tooltip": {"mode": "multi", "sort": "desc"}}
    return out


def promql(text):
    """PromQL with the dashboard's selectors written as SEL_HOST, SEL_ENGINE, SEL_ALIAS (Grafana's own
    variables, e.g. $__rate_interval, stay as they are)."""
    return text.replace("SEL_HOST", HOST_SEL).replace("SEL_ENGINE", ENGINE_SEL).replace("SEL_ALIAS", ALIAS_SEL)


def series(metric, sel):
    return metric + "{" + sel + "}"


def rate(metric, sel):
    return "rate(" + series(metric, sel) + "[" + RATE + "])"


def agg(labels, inner, op="sum"):
    return op + (" by (" + labels + ")" if labels else "") + " (" + inner + ")"


def quantiles(metric, by, sel, legend):
    return [("histogram_quantile(" + q + ", " + agg("le, " + by, rate(metric + "_bucket", sel)) + ")", name + " " + legend)
            for name, q in QUANTILES]


def dashboard(uid, title, description, variables, panels):
    x = y = row_height = 0
    laid = []
    for index, given in enumerate(panels, start=1):
        item = dict(given, id=index)
        w, h = item["gridPos"]["w"], item["gridPos"]["h"]
        if x + w > 24:
            x, y, row_height = 0, y + row_height, 0
        item["gridPos"] = {"x": x, "y": y, "w": w, "h": h}
        x, row_height = x + w, max(row_height, h)
        laid.append(item)
    return {
        "uid": uid, "title": title, "description": description, "tags": [TAG], "editable": True,
        "schemaVersion": SCHEMA_VERSION, "version": 1, "time": {"from": "now-1h", "to": "now"}, "refresh": "30s",
        "timezone": "browser", "graphTooltip": 1,
        "links": [{"title": "LLM stack", "type": "dashboards", "tags": [TAG], "asDropdown": False,
                   "includeVars": True, "keepTime": True}],
        "templating": {"list": [_variable_datasource()] + [VARIABLES[name]() for name in variables]},
        "annotations": {"list": []},
        "panels": laid,
    }


def overview():
    panels = [
        panel("Requests through the gateway", "Requests per second LiteLLM answered, by model alias.",
              [(promql("sum by (requested_model) (rate(litellm_proxy_total_requests_metric_total{SEL_ALIAS}[$__rate_interval]))"),
                "{{requested_model}}")], unit="reqps"),
        panel("Gateway errors (share of requests)", "Failed requests over all requests (the LLMStackGatewayErrorRatio alert).",
              [(promql("sum(rate(litellm_proxy_failed_requests_metric_total{SEL_ALIAS}[$__rate_interval]))"
                       " / sum(rate(litellm_proxy_total_requests_metric_total{SEL_ALIAS}[$__rate_interval]))"), "errors")],
              unit="percentunit"),
        panel("Latency through the gateway", "Time from the request to the last byte, as LiteLLM measured it.",
              quantiles("litellm_request_total_latency_metric", "requested_model", ALIAS_SEL, "{{requested_model}}"), unit="s"),
        panel("Engines: requests running and waiting", "vLLM's scheduler: running in the batch, waiting for room.",
              [(promql("sum by (model_name) (vllm:num_requests_running{SEL_HOST, model_name=~\"$model\"})"), "running {{model_name}}"),
               (promql("sum by (model_name) (vllm:num_requests_waiting{SEL_HOST, model_name=~\"$model\"})"), "waiting {{model_name}}")]),
        panel("Tokens generated", "Output tokens per second, all engines of each model.",
              [(promql("sum by (model_name) (rate(vllm:generation_tokens_total{SEL_HOST, model_name=~\"$model\"}[$__rate_interval]))"),
                "{{model_name}}")], unit="short"),
        panel("Targets up", "1 when Prometheus scraped the target last time (the LLMStackTargetDown alert).",
              [(promql("up{SEL_HOST}"), "{{job}} {{llmops_host}} {{engine}}")], kind="stat", width=12, height=6),
    ]
    return dashboard("llm-stack-overview", "LLM stack: overview",
                     "The service as its users see it: requests, errors and latency through the gateway, and the engines' load.",
                     ["host", "alias", "model"], panels)


def engine():
    panels = [
        panel("Requests running", "In the running batch, per engine.",
              [(promql("vllm:num_requests_running{SEL_ENGINE}"), "{{llmops_host}} {{engine}}")], width=8),
        panel("Requests waiting", "Waiting for room in the batch (the LLMStackRequestQueueGrowing alert).",
              [(promql("vllm:num_requests_waiting{SEL_ENGINE}"), "{{llmops_host}} {{engine}}")], width=8),
        panel("KV cache usage", "Share of the KV cache in use (the LLMStackKVCacheNearlyFull alert).",
              [(promql("max by (llmops_host, engine) (vllm:kv_cache_usage_perc{SEL_ENGINE})"), "{{llmops_host}} {{engine}}")],
              unit="percentunit", width=8),
        panel("Time to first token", "From arrival to the first output token (the LLMStackTimeToFirstTokenHigh alert).",
              quantiles("vllm:time_to_first_token_seconds", "model_name", ENGINE_SEL, "{{model_name}}"), unit="s", width=8),
        panel("Inter-token latency", "Between two output tokens of a request (what a streaming user feels).",
              quantiles("vllm:inter_token_latency_seconds", "model_name", ENGINE_SEL, "{{model_name}}"), unit="s", width=8),
        panel("End-to-end latency", "From arrival to the last token, in the engine.",
              quantiles("vllm:e2e_request_latency_seconds", "model_name", ENGINE_SEL, "{{model_name}}"), unit="s", width=8),
        panel("Prompt and generation tokens", "Tokens per second read (prompt) and written (generation).",
              [(promql("sum by (model_name) (rate(vllm:prompt_tokens_total{SEL_ENGINE}[$__rate_interval]))"), "prompt {{model_name}}"),
               (promql("sum by (model_name) (rate(vllm:generation_tokens_total{SEL_ENGINE}[$__rate_interval]))"), "generation {{model_name}}")]),
        panel("Queue time", "Time a request waited before it was scheduled.",
              quantiles("vllm:request_queue_time_seconds", "model_name", ENGINE_SEL, "{{model_name}}"), unit="s"),
        panel("Prefix cache hit rate", "Share of prompt tokens found in the prefix cache.",
              [(promql("sum by (model_name) (rate(vllm:prefix_cache_hits_total{SEL_ENGINE}[$__rate_interval]))"
                       " / sum by (model_name) (rate(vllm:prefix_cache_queries_total{SEL_ENGINE}[$__rate_interval]))"), "{{model_name}}")],
              unit="percentunit", width=8),
        panel("Preemptions", "Requests preempted for lack of KV cache, per second.",
              [(promql("sum by (llmops_host, engine) (rate(vllm:num_preemptions_total{SEL_ENGINE}[$__rate_interval]))"),
                "{{llmops_host}} {{engine}}")], width=8),
        panel("Requests finished", "Per second, by why they finished (stop, length, abort).",
              [(promql("sum by (finished_reason) (rate(vllm:request_success_total{SEL_ENGINE}[$__rate_interval]))"),
                "{{finished_reason}}")], unit="reqps", width=8),
    ]
    return dashboard("llm-stack-engine", "LLM stack: engines (vLLM)",
                     "vLLM per host, engine and model: scheduler, latency, throughput, KV cache.",
                     ["host", "model", "engine"], panels)


def gateway():
    panels = [
        panel("Requests by alias", "Requests per second LiteLLM answered.",
              [(promql("sum by (requested_model) (rate(litellm_proxy_total_requests_metric_total{SEL_ALIAS}[$__rate_interval]))"),
                "{{requested_model}}")], unit="reqps", width=8),
        panel("Requests by key", "Per API key (its alias where it has one; the master key has none).",
              [(promql("sum by (api_key_alias, hashed_api_key) (rate(litellm_proxy_total_requests_metric_total{SEL_ALIAS}[$__rate_interval]))"),
                "{{api_key_alias}} {{hashed_api_key}}")], unit="reqps", width=8),
        panel("Requests by team", "Per team of the calling key (empty without teams).",
              [(promql("sum by (team_alias, team) (rate(litellm_proxy_total_requests_metric_total{SEL_ALIAS}[$__rate_interval]))"),
                "{{team_alias}} {{team}}")], unit="reqps", width=8),
        panel("Failed requests by status", "Per second, by the HTTP status the client got (401/403 keys, 429 limits, 5xx engines).",
              [(promql("sum by (exception_status, requested_model) (rate(litellm_proxy_failed_requests_metric_total{SEL_ALIAS}[$__rate_interval]))"),
                "{{exception_status}} {{requested_model}}")], unit="reqps"),
        panel("Latency the gateway adds", "LiteLLM's own time on a request, the engine's excluded.",
              quantiles("litellm_overhead_latency_metric", "model_group", GROUP_SEL, "{{model_group}}"), unit="s"),
        panel("Latency of the engines, seen by the gateway", "The engines' answer time as LiteLLM measured it.",
              quantiles("litellm_llm_api_latency_metric", "model_group", GROUP_SEL, "{{model_group}}"), unit="s"),
        panel("Tokens through the gateway", "Prompt and completion tokens per second, by alias.",
              [(promql("sum by (requested_model) (rate(litellm_total_tokens_metric_total{SEL_ALIAS}[$__rate_interval]))"),
                "{{requested_model}}")], unit="short"),
        panel("Fallbacks", "Requests sent to a fallback after every deployment failed (the LLMStackGatewayFallbacks alert).",
              [(promql("sum by (requested_model) (rate(litellm_deployment_successful_fallbacks_total{SEL_ALIAS}[$__rate_interval]))"),
                "succeeded {{requested_model}}"),
               (promql("sum by (requested_model) (rate(litellm_deployment_failed_fallbacks_total{SEL_ALIAS}[$__rate_interval]))"),
                "failed {{requested_model}}")], unit="reqps", width=8),
        panel("Deployments cooled down", "Times per second the router took a deployment out for its cooldown.",
              [(promql("sum by (api_base, exception_status) (rate(litellm_deployment_cooled_down_total{SEL_HOST}[$__rate_interval]))"),
                "{{api_base}} {{exception_status}}")], width=8),
        panel("Deployment state", "0 healthy, 1 partial outage, 2 complete outage, per engine behind the gateway.",
              [(promql("max by (api_base) (litellm_deployment_state{SEL_HOST})"), "{{api_base}}")], width=8),
    ]
    return dashboard("llm-stack-gateway", "LLM stack: gateway (LiteLLM)",
                     "LiteLLM per model alias, API key and team: requests, errors, the latency it adds, fallbacks and cooldowns.",
                     ["host", "alias"], panels)


DASHBOARDS = {"llm-stack-overview.json": overview, "llm-stack-engine.json": engine, "llm-stack-gateway.json": gateway}


def render(build) -> str:
    return json.dumps(build(), indent=2, sort_keys=True) + "\n"


def expressions():
    """(dashboard file, panel title, expr) of every target, for the suite's checks."""
    out = []
    for name, build in DASHBOARDS.items():
        for item in build()["panels"]:
            out.extend((name, item["title"], t["expr"]) for t in item["targets"])
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 when a file is stale")
    args = parser.parse_args(argv)
    stale = []
    for name, build in DASHBOARDS.items():
        path = OUT / name
        text = render(build)
        if path.is_file() and path.read_text(encoding="utf-8") == text:
            continue
        stale.append(str(path.relative_to(ROOT)))
        if not args.check:
            OUT.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    if args.check and stale:
        print("stale (python tools/dashboards.py): " + ", ".join(stale), file=sys.stderr)
        return 1
    for name in stale:
        print(name + ": written")
    return 0


if __name__ == "__main__":
    sys.exit(main())
