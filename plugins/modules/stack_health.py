#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: llmops.gpu_stack contributors
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: stack_health
short_description: Check the LLM stack end to end (engine, gateway, Redis, Prometheus, a chat, moderation)
version_added: "0.1.0"
description:
  - Runs the checks that verify a deployed stack, from the host that runs it, and reports each
    component with its latency, details and the reason it failed.
  - V(engine) asks the inference engine (vLLM) for C(GET /v1/models) with O(engine_api_key) and
    expects every model in O(expected_models). It tells apart connection refused, timeout,
    C(401), an answer that is not JSON, and a missing model.
  - V(gateway) asks the LiteLLM proxy for C(GET /health/liveliness) and C(GET /health/readiness)
    (no key needed), then, when O(gateway_api_key) is set, C(GET /v1/models) with that master key,
    which must list O(expected_models). LiteLLM's C(/health) is not called, because it calls
    every deployment.
  - V(redis) speaks the Redis protocol over a socket, C(AUTH) with O(redis_password) (when set)
    then C(PING), and expects C(PONG); it reports C(NOAUTH), C(WRONGPASS) and connection errors.
  - >-
    V(database) (not run by default) logs in to the gateway's Postgres as O(database_user) on
    O(database_name) with O(database_password) (SCRAM-SHA-256, MD5 or cleartext, as the server asks;
    the wire protocol is spoken by the module itself) and leaves. It reports a wrong password, a
    missing database, a server starting up or full, and connection errors. LiteLLM's own
    C(/health/readiness) keeps saying C(db: connected) for a while after the database went away, so
    it is not used for this.
  - V(prometheus) reads C(GET /api/v1/targets?state=active); each job in O(expected_jobs) needs at
    least one target and every one of its targets C(health=up). It reports the job that is down
    or missing and Prometheus's last scrape error.
  - >-
    V(chat) sends one small chat completion (C(max_tokens=8)) through the gateway with the master key
    and expects C(200) with choices. It runs after the V(engine) and V(gateway) checks of the same
    round, and only when those that were requested passed; otherwise it fails with
    C(not run: engine failing). A chat to a dead engine would make LiteLLM spend its retries (about
    6 seconds) and count towards the deployment's cooldown.
  - >-
    V(moderation) (not run by default: the moderation guardrail is optional) checks the gateway's
    moderation guardrail end to end, with the master key. First C(GET /v2/guardrails/list) must list
    O(moderation_guardrail): LiteLLM starts without a guardrail whose settings fail its own validation
    and lists only the guardrails it loaded, so this proves the guardrail is live. Then
    O(moderation_unsafe_prompt) is sent as a small chat completion (C(max_tokens=8)): with
    O(moderation_expect=block) the answer must be the guardrail's C(400) with a C(moderation) verdict
    C(flagged: true) (its label and score are reported); C(200) fails with C(unsafe probe was NOT blocked).
    With O(moderation_expect=log) (the guardrail's C(moderation_action: log)) the answer must be C(200).
    Finally O(moderation_safe_prompt) must get C(200). A C(503) (the guardrail fails closed when its
    guard model gives no verdict) fails with V(moderation unavailable (guard down?\)). Like V(chat), it
    runs after the V(engine) and V(gateway) checks of the same round and only when those passed.
  - The checks of one round run at the same time (V(chat) and V(moderation) after them). With O(wait_timeout)
    above 0 the module polls every O(poll_interval) seconds, re-running only the checks that failed, until all pass or time
    runs out. Once none fails, the checks that passed in earlier rounds are run again at once (a
    confirmation round), so that C(healthy) rests on back-to-back rounds and a component that went
    down meanwhile is not missed.
  - Never changes anything. Fails, naming each failing component and its reason, when the stack
    is not healthy.
author:
  - llmops.gpu_stack maintainers (!UNKNOWN)
options:
  engine_url:
    description:
      - Base URL of the inference engine (vLLM's OpenAI server), without C(/v1).
    type: str
    default: http://127.0.0.1:8001
  engine_api_key:
    description:
      - The engine's API key (vLLM's C(--api-key) / C(VLLM_API_KEY)), sent as a bearer token.
    type: str
  expected_models:
    description:
      - Model names that the engine and the gateway must list (for example V(qwen3-8b)).
      - When empty, any model list is accepted.
    type: list
    elements: str
    default: []
  gateway_url:
    description:
      - Base URL of the LiteLLM proxy.
    type: str
    default: http://127.0.0.1:4000
  gateway_api_key:
    description:
      - The LiteLLM master key. Needed by the V(chat) check and for the gateway's model list;
        without it the V(gateway) check only asks the liveliness and readiness endpoints.
    type: str
  redis_host:
    description:
      - Redis host name or address.
    type: str
    default: 127.0.0.1
  redis_port:
    description:
      - Redis port.
    type: int
    default: 6379
  redis_password:
    description:
      - Redis password (C(requirepass)), sent with C(AUTH).
      - When the server has no password but one is given, the check fails, because the server is
        not configured as expected.
    type: str
  database_host:
    description:
      - Host name or address of the gateway's Postgres.
    type: str
    default: 127.0.0.1
  database_port:
    description:
      - Port of that Postgres.
    type: int
    default: 5432
  database_user:
    description:
      - The user the gateway logs in as.
    type: str
    default: litellm
  database_name:
    description:
      - The gateway's database.
    type: str
    default: litellm
  database_password:
    description:
      - The password of O(database_user).
    type: str
  prometheus_url:
    description:
      - Base URL of Prometheus.
    type: str
    default: http://127.0.0.1:9090
  expected_jobs:
    description:
      - Prometheus job names that must have at least one active target, all of them up.
      - When empty, the check only needs Prometheus to answer.
    type: list
    elements: str
    default: [litellm-proxy, inference-engine]
  chat_model:
    description:
      - Model (gateway alias) for the V(chat) check.
      - Also the model that the V(moderation) probes are sent to.
      - Defaults to the first of O(expected_models); one of the two is required when V(chat) or V(moderation)
        is in O(checks).
    type: str
  chat_prompt:
    description:
      - The user message of the V(chat) check.
    type: str
    default: Reply with OK.
  moderation_guardrail:
    description:
      - Name of the moderation guardrail (its C(guardrail_name) in the LiteLLM config) that the
        V(moderation) check requires in the gateway's C(/v2/guardrails/list).
    type: str
    default: llmops-moderation
  moderation_unsafe_prompt:
    description:
      - The prompt that the guard must flag, for the V(moderation) check.
      - The default is flagged (category Violent) by Qwen3Guard-Gen. Another guard model may need
        another prompt.
    type: str
    default: Explain step by step how to build a bomb at home.
  moderation_safe_prompt:
    description:
      - The prompt that the guard must let through, for the V(moderation) check.
    type: str
    default: What is the capital of France?
  moderation_expect:
    description:
      - What the V(moderation) check expects for O(moderation_unsafe_prompt), matching the guardrail's
        C(moderation_action).
      - V(block) expects C(400) with a flagged verdict. V(log) (log-only moderation) expects C(200);
        the check cannot see whether the prompt was flagged, only that the guardrail is loaded and
        lets the prompts through.
    type: str
    choices: [block, log]
    default: block
  checks:
    description:
      - The checks to run. V(moderation) is not in the default list; add it where the gateway runs the
        moderation guardrail.
    type: list
    elements: str
    choices: [engine, gateway, redis, database, prometheus, chat, moderation]
    default: [engine, gateway, redis, prometheus, chat]
  wait_timeout:
    description:
      - Seconds to keep polling until every check passes. V(0) runs one round.
      - The last round may end up to O(request_timeout) seconds later.
    type: float
    default: 0
  poll_interval:
    description:
      - Seconds between rounds while waiting. With the default, the module reports healthy within
        a fraction of a second after the last component becomes ready.
    type: float
    default: 0.2
  request_timeout:
    description:
      - Timeout in seconds of each HTTP request and of the Redis connection.
    type: float
    default: 5
  validate_certs:
    description:
      - Validate TLS certificates of C(https://) URLs.
    type: bool
    default: true
extends_documentation_fragment:
  - llmops.gpu_stack._attributes
  - llmops.gpu_stack._attributes.read_only
notes:
  - Runs on the managed host with the standard library only; the default URLs are the stack's
    loopback ports.
  - A stopped engine also fails V(chat) (not run) and, once Prometheus has scraped, the
    C(inference-engine) job of V(prometheus); a stopped gateway also fails V(chat) (not run) and
    the C(litellm-proxy) job.
  - The V(moderation) check sends two chat completions through the guardrail, and with
    O(moderation_expect=log) the unsafe probe reaches the engine; each is logged by the guardrail as a
    moderation event (the guardrail logs its verdict, never the text).
  - >-
    With O(moderation_expect=log) and the guardrail's C(on_error: open), a guard that is down is not
    detected by V(moderation) (both probes pass); the guardrail logs C(guard_error_passed) lines.
  - Requests honour the usual proxy environment variables; keep C(127.0.0.1) in E(no_proxy)
    where a proxy is set.
seealso:
  - name: LiteLLM proxy health endpoints
    description: Liveliness and readiness probes that need no key.
    link: https://docs.litellm.ai/docs/proxy/health
  - name: LiteLLM guardrails
    description: Custom guardrails and the C(/v2/guardrails/list) endpoint.
    link: https://docs.litellm.ai/docs/proxy/guardrails/quick_start
  - name: Prometheus targets API
    description: The C(/api/v1/targets) answer this module evaluates.
    link: https://prometheus.io/docs/prometheus/latest/querying/api/#targets
"""

EXAMPLES = r"""
- name: Verify the stack, waiting up to 10 minutes for the engine to load its weights
  llmops.gpu_stack.stack_health:
    engine_api_key: "{{ inference_engine_api_key }}"
    gateway_api_key: "{{ gateway_master_key }}"
    redis_password: "{{ gateway_redis_password }}"
    expected_models: [qwen3-8b]
    wait_timeout: 600
  register: health
  no_log: true

- name: Show each component
  ansible.builtin.debug:
    msg: "{{ item.key }}: {{ 'ok' if item.value.ok else item.value.error }} ({{ item.value.latency_ms }} ms)"
  loop: "{{ health.components | dict2items }}"
  loop_control:
    label: "{{ item.key }}"

- name: Check only Redis and Prometheus, once
  llmops.gpu_stack.stack_health:
    checks: [redis, prometheus]
    redis_password: "{{ gateway_redis_password }}"
    expected_jobs: [inference-engine, litellm-proxy, prometheus]
  no_log: true

- name: Check that the gateway's database takes the gateway's credentials
  llmops.gpu_stack.stack_health:
    checks: [database]
    database_host: 10.0.0.10
    database_password: "{{ gateway_database_password }}"
  no_log: true

- name: Check that the moderation guardrail is loaded and blocks an unsafe prompt
  llmops.gpu_stack.stack_health:
    checks: [engine, gateway, moderation]
    engine_api_key: "{{ inference_engine_api_key }}"
    gateway_api_key: "{{ gateway_master_key }}"
    expected_models: [qwen3-8b]
    moderation_guardrail: llmops-moderation
    moderation_expect: block
  register: moderation
  no_log: true

- name: Log-only moderation lets flagged prompts through
  llmops.gpu_stack.stack_health:
    checks: [gateway, moderation]
    gateway_api_key: "{{ gateway_master_key }}"
    chat_model: qwen3-8b
    moderation_expect: log
  no_log: true

- name: Report without failing the play
  llmops.gpu_stack.stack_health:
    engine_api_key: "{{ inference_engine_api_key }}"
    gateway_api_key: "{{ gateway_master_key }}"
    redis_password: "{{ gateway_redis_password }}"
    expected_models: [qwen3-8b]
  register: health
  ignore_errors: true
  no_log: true
"""

RETURN = r"""
healthy:
  description: Whether every requested check passed.
  returned: always
  type: bool
  sample: false
components:
  description: >-
    One entry per requested check, keyed by its name (V(engine), V(gateway), V(redis), V(prometheus), V(chat),
    V(moderation)).
  returned: always
  type: dict
  contains:
    ok:
      description: Whether this check passed.
      type: bool
      sample: true
    latency_ms:
      description: Milliseconds the check's last run took (all its requests together).
      type: float
      sample: 3.2
    detail:
      description:
        - What the check saw. V(engine) and V(gateway) give C(models) (the listed model ids);
          V(gateway) gives C(liveliness), C(readiness), C(litellm_version), C(models_checked);
          V(redis) gives C(address), C(auth), C(ping); V(database) gives C(address), C(user), C(database),
          C(auth) (the method the server asked for), C(server_version); V(prometheus) gives C(jobs)
          (per expected job C(up), C(total), C(targets)) and C(other_jobs); V(chat) gives
          C(model), C(status), C(finish_reason), C(content) (cut to 80 characters), C(usage).
        - V(moderation) gives C(guardrail), C(model), C(expect), C(guardrails) (the names the gateway
          lists), C(unsafe) (V(blocked); V(passed (log-only\)) when that is expected; else V(passed),
          V(unavailable) or V(error)), C(unsafe_status) (the HTTP status), C(unsafe_label), C(unsafe_score) and C(unsafe_stage)
          (from the guardrail's verdict, when blocked), C(safe) (V(passed), V(blocked), V(unavailable) or
          V(error)) and C(safe_status); keys after the step that failed are absent.
      type: dict
      sample: {"models": ["qwen3-8b"]}
    error:
      description: >-
        Why the check failed (null when it passed); V(chat) and V(moderation) say C(not run: X failing)
        when they were not sent.
      type: str
      sample: connection refused (127.0.0.1:6379)
  sample:
    engine: {ok: true, latency_ms: 2.1, detail: {models: [qwen3-8b]}, error: null}
    redis: {ok: false, latency_ms: 0.4, detail: {address: "127.0.0.1:6379"}, error: "connection refused (127.0.0.1:6379)"}
failing:
  description: Names of the checks that failed, in check order.
  returned: always
  type: list
  elements: str
  sample: [redis, prometheus]
attempts:
  description: Rounds of checks run (confirmation rounds included).
  returned: always
  type: int
  sample: 3
elapsed:
  description: Seconds from the first round's start to the result.
  returned: always
  type: float
  sample: 0.412
msg:
  description:
    - >-
      A summary. Either which checks passed, or each failing check with its reason, for example
      V(stack unhealthy: redis: connection refused (127.0.0.1:6379\); prometheus: job inference-engine target down (connection refused\)).
  returned: always
  type: str
  sample: "stack healthy: engine, gateway, redis, prometheus, chat ok"
"""

from functools import partial

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.llmops.gpu_stack.plugins.module_utils._health_checks import (
    CHECKS,
    DEFAULT_CHECKS,
    DEFAULT_JOBS,
    DEPENDS,
    MODERATION_EXPECT,
    MODERATION_GUARDRAIL,
    MODERATION_SAFE_PROMPT,
    MODERATION_UNSAFE_PROMPT,
    check_chat,
    check_database,
    check_engine,
    check_gateway,
    check_moderation,
    check_prometheus,
    check_redis,
    summary_message,
)
from ansible_collections.llmops.gpu_stack.plugins.module_utils._poll import poll

CHAT_MAX_TOKENS = 8


def build_checks(params):
    """name -> zero-argument callable, in the canonical order, for the requested checks."""
    timeout = params["request_timeout"]
    certs = params["validate_certs"]
    expected = params["expected_models"]
    chat_model = params["chat_model"] or (expected[0] if expected else None)
    table = {
        "engine": partial(check_engine, params["engine_url"], params["engine_api_key"], expected, timeout, certs),
        "gateway": partial(check_gateway, params["gateway_url"], params["gateway_api_key"], expected, timeout, certs),
        "redis": partial(check_redis, params["redis_host"], params["redis_port"], params["redis_password"], timeout),
        "database": partial(check_database, params["database_host"], params["database_port"], params["database_user"],
                            params["database_password"], params["database_name"], timeout=timeout),
        "prometheus": partial(check_prometheus, params["prometheus_url"], params["expected_jobs"], timeout, certs),
        "chat": partial(check_chat, params["gateway_url"], params["gateway_api_key"], model=chat_model,
                        prompt=params["chat_prompt"], max_tokens=CHAT_MAX_TOKENS, timeout=timeout, validate_certs=certs),
        "moderation": partial(check_moderation, params["gateway_url"], params["gateway_api_key"], model=chat_model,
                              guardrail_name=params["moderation_guardrail"], unsafe_prompt=params["moderation_unsafe_prompt"],
                              safe_prompt=params["moderation_safe_prompt"], expect=params["moderation_expect"],
                              max_tokens=CHAT_MAX_TOKENS, timeout=timeout, validate_certs=certs),
    }
    return {name: table[name] for name in CHECKS if name in params["checks"]}


def main():
    module = AnsibleModule(
        argument_spec=dict(
            engine_url=dict(type="str", default="http://127.0.0.1:8001"),
            engine_api_key=dict(type="str", no_log=True),
            expected_models=dict(type="list", elements="str", default=[]),
            gateway_url=dict(type="str", default="http://127.0.0.1:4000"),
            gateway_api_key=dict(type="str", no_log=True),
            redis_host=dict(type="str", default="127.0.0.1"),
            redis_port=dict(type="int", default=6379),
            redis_password=dict(type="str", no_log=True),
            database_host=dict(type="str", default="127.0.0.1"),
            database_port=dict(type="int", default=5432),
            database_user=dict(type="str", default="litellm"),
            database_name=dict(type="str", default="litellm"),
            database_password=dict(type="str", no_log=True),
            prometheus_url=dict(type="str", default="http://127.0.0.1:9090"),
            expected_jobs=dict(type="list", elements="str", default=list(DEFAULT_JOBS)),
            chat_model=dict(type="str"),
            chat_prompt=dict(type="str", default="Reply with OK."),
            moderation_guardrail=dict(type="str", default=MODERATION_GUARDRAIL),
            moderation_unsafe_prompt=dict(type="str", default=MODERATION_UNSAFE_PROMPT),
            moderation_safe_prompt=dict(type="str", default=MODERATION_SAFE_PROMPT),
            moderation_expect=dict(type="str", choices=list(MODERATION_EXPECT), default="block"),
            checks=dict(type="list", elements="str", choices=list(CHECKS), default=list(DEFAULT_CHECKS)),
            wait_timeout=dict(type="float", default=0),
            poll_interval=dict(type="float", default=0.2),
            request_timeout=dict(type="float", default=5),
            validate_certs=dict(type="bool", default=True),
        ),
        supports_check_mode=True,
    )
    params = module.params
    if not params["checks"]:
        module.fail_json(msg="checks is empty: name at least one of %s" % ", ".join(CHECKS))
    for name in ("chat", "moderation"):
        if name in params["checks"] and not (params["chat_model"] or params["expected_models"]):
            module.fail_json(msg="the %s check needs chat_model or expected_models" % name)
    for name in ("moderation_guardrail", "moderation_unsafe_prompt", "moderation_safe_prompt"):
        if "moderation" in params["checks"] and not (params[name] or "").strip():
            module.fail_json(msg="%s must not be empty" % name)
    for name in ("wait_timeout", "poll_interval"):
        if params[name] < 0:
            module.fail_json(msg="%s must be >= 0, got %s" % (name, params[name]))
    if params["request_timeout"] <= 0:
        module.fail_json(msg="request_timeout must be > 0, got %s" % params["request_timeout"])

    checks = build_checks(params)
    result = poll(checks, wait_timeout=params["wait_timeout"], poll_interval=params["poll_interval"], depends=DEPENDS)
    result["msg"] = summary_message(result["components"], list(checks))
    if not result["healthy"]:
        module.fail_json(changed=False, **result)
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
