# -*- coding: utf-8 -*-
# Copyright: llmops.gpu_stack contributors
# Apache License 2.0 (see LICENSE)
"""Check every input of every host of a run, before anything changes: one report of all problems.

Note that this plugin util is **PRIVATE** to the collection. It can have breaking changes at any time.
Do not use this from other collections or standalone plugins/modules!

Three kinds of checks, for every host:

1. the roles' argument specs (types, element types, choices, sub-options) on every variable the
   host sets (its inventory, group_vars, host_vars, extra vars);
2. the rules a spec cannot express (ranges, formats, cross-variable and fleet rules): the stack
   plan's problems (plugin_utils._plan) and the value rules below;
3. the host's prerequisites that its gathered facts show (OS family and version, systemd, free
   disk under the models root and the stack root).

Each problem names the variable, the value given (never a secret's), where it came from when the
value says so (an inventory file and line, or the environment variable an inventory reads), and
what would be accepted.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping

import yaml
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

try:  # ansible-core 2.19's data tags: where a value came from
    from ansible._internal._datatag._tags import Origin
except ImportError:  # other cores: no origin, no harm
    Origin = None

from ansible_collections.llmops.gpu_stack.plugins.plugin_utils import _rules
from ansible_collections.llmops.gpu_stack.plugins.plugin_utils._plan import stack_plan
from ansible_collections.llmops.gpu_stack.plugins.plugin_utils._problems import Problem, Problems
from ansible_collections.llmops.gpu_stack.plugins.plugin_utils._settings import SECRETS, HostSettings, roles_dir

# Roles and their variable prefixes (every role of the collection).
ROLE_PREFIXES = {
    "_common": "gpu_stack_",
    "docker_engine": "docker_engine_",
    "nvidia_container_toolkit": "nvidia_container_toolkit_",
    "model_store": "model_store_",
    "inference_engine": "inference_engine_",
    "gateway": "gateway_",
    "monitoring": "monitoring_",
    "moderation": "moderation_",
}
# Facts and internal variables that carry a prefix but are not settings.
NOT_SETTINGS = re.compile(r"^(gpu_stack_plan|gpu_stack_validation)$")
# Value rules of variables of the roles outside the plan (ranges a spec cannot express).
VALUE_RULES = {
    "model_store_download_timeout": _rules.positive_int,
    "model_store_progress_interval": _rules.positive_int,
    "model_store_download_workers": _rules.positive_int,
    "docker_engine_wait_timeout": _rules.positive_int,
}
# What each playbook uses: the roles whose specs are checked (plus those the plan gives a host).
PURPOSES = {
    "deploy": ("_common", "docker_engine", "model_store"),
    "rolling_update": ("_common", "docker_engine", "model_store"),
    "verify": ("_common",),
    "teardown": ("_common",),
}
SUPPORTED_OS = {"Debian": {"Debian": (12, 13), "Ubuntu": (22, 24)}, "RedHat": {"RedHat": (8, 9), "Rocky": (8, 9), "AlmaLinux": (8, 9)}}
_ENV = re.compile(r"lookup\(\s*['\"](?:ansible\.builtin\.)?env['\"]\s*,\s*['\"]([A-Za-z_][A-Za-z0-9_]*)['\"]")
_specs_cache: dict = {}


def role_specs(role: str) -> dict:
    """{entry point: options} of a role (empty when it has no argument specs)."""
    if role not in _specs_cache:
        path = os.path.join(roles_dir(), role, "meta", "argument_specs.yml")
        try:
            with open(path, encoding="utf-8") as handle:
                data = (yaml.safe_load(handle) or {}).get("argument_specs") or {}
        except FileNotFoundError:
            data = {}
        _specs_cache[role] = {entry: (spec or {}).get("options") or {} for entry, spec in data.items()}
    return _specs_cache[role]


def known_variables() -> set:
    names = set()
    for role in ROLE_PREFIXES:
        for options in role_specs(role).values():
            names.update(options)
    return names


def _strip_spec(options):
    """An argument spec ArgumentSpecValidator takes (no defaults: only given values are checked)."""
    out = {}
    for name, given in options.items():
        spec = {k: v for k, v in given.items() if k not in ("description", "default", "version_added")}
        if "options" in spec:
            spec["options"] = _strip_spec(spec["options"])
        out[name] = spec
    return out


def spec_problems(role: str, given: Mapping) -> Problems:
    """Problems of the values ``given`` (name -> value) against the role's main argument spec."""
    problems = Problems()
    options = role_specs(role).get("main") or {}
    params = {name: given[name] for name in options if name in given}
    if not params:
        return problems
    # A string given for a list would be split on commas (or become one item) without a word: refuse it.
    for name in list(params):
        if options[name].get("type") == "list" and isinstance(params[name], str):
            problems.add(name, params[name], "a list (YAML [a, b] or one item per line); a string is not split into "
                         "arguments", secret=bool(options[name].get("no_log")))
            del params[name]
    if not params:
        return problems
    spec = _strip_spec({name: options[name] for name in params})
    for option in spec.values():
        option.pop("required", None)
    result = ArgumentSpecValidator(spec).validate(params)
    secrets = [str(v) for k, v in params.items() if options[k].get("no_log") and v]
    for error in result.errors:
        text = str(error)
        for secret in secrets:
            text = text.replace(secret, "********")
        name = next((n for n in sorted(params, key=len, reverse=True) if "'%s'" % n in text or n in text), None)
        problem = Problem(name or role, params.get(name), "", secret=bool(name and options[name].get("no_log")))
        problem.text = "%s (argument spec of %s)" % (text, role)
        problems.append(problem)
    return problems


def origin(raw_value) -> str:
    """Where a value came from: the environment variable an inventory reads, or its file and line."""
    if isinstance(raw_value, str):
        match = _ENV.search(raw_value)
        if match:
            return "environment variable %s" % match.group(1)
    try:
        tag = Origin.get_tag(raw_value) if Origin is not None else None
    except Exception:  # noqa: BLE001 - no origin, no harm
        tag = None
    if tag is not None and getattr(tag, "path", None):
        return "%s:%s" % (tag.path, tag.line_num) if getattr(tag, "line_num", None) else str(tag.path)
    return ""


def _variable_root(variable: str) -> str:
    return re.split(r"[\[.]", variable, maxsplit=1)[0]


def host_problems(facts: Mapping, plan: Mapping, settings) -> Problems:
    """Prerequisites the host's gathered facts show (skipped when the host's facts are not there)."""
    problems = Problems()
    if not isinstance(facts, Mapping) or not facts:
        return problems
    family = facts.get("os_family")
    distribution = facts.get("distribution")
    major = facts.get("distribution_major_version")
    supported = SUPPORTED_OS.get(family, {}).get(distribution)
    label = "%s %s" % (distribution, facts.get("distribution_version"))
    if supported is None or not _rules.is_int(major) or int(major) not in supported:
        problems.add("ansible_facts.distribution", label,
                     "Debian 12/13, Ubuntu 22.04/24.04 (RHEL 8/9 for the toolkit role)", note="host prerequisite")
    if facts.get("service_mgr") and facts.get("service_mgr") != "systemd":
        problems.add("ansible_facts.service_mgr", facts.get("service_mgr"),
                     "systemd (Docker, the firewall unit and the model hub jobs run under it)", note="host prerequisite")
    return problems


def validate(hosts, hostvars, groups, *, purpose="deploy", gather_warnings=True):
    """(plans, problems, warnings) for every host of ``hosts``."""
    problems = Problems()
    warnings = []
    plans = {}
    known = known_variables()
    try:
        raw_all = {host: hostvars.raw_get(host) for host in hosts} if hasattr(hostvars, "raw_get") else {}
    except Exception:  # noqa: BLE001 - raw values only feed the "from" hints
        raw_all = {}
    for host in hosts:
        host_vars = hostvars[host] if host in hostvars else {}
        found = Problems()
        given = {}
        for name in list(host_vars.keys()) if hasattr(host_vars, "keys") else []:
            if not isinstance(name, str) or NOT_SETTINGS.match(name):
                continue
            prefix = next((p for p in ROLE_PREFIXES.values() if name.startswith(p)), None)
            if prefix is None:
                continue
            if name not in known:
                close = difflib.get_close_matches(name, sorted(known), n=1)
                warnings.append("%s: %s is not a variable of any role of llmops.gpu_stack%s" % (
                    host, name, (" (did you mean %s?)" % close[0]) if close else ""))
                continue
            try:
                given[name] = host_vars[name]
            except Exception as err:  # noqa: BLE001 - an undefined or failing template is itself a problem
                found.add(name, None, "a value that can be templated (%s)" % err, given=False)
        roles = list(PURPOSES.get(purpose, PURPOSES["deploy"]))
        try:
            plan, plan_problems = stack_plan(host, hostvars, groups)
        except Exception as err:  # noqa: BLE001 - report, never crash the check
            # A wrongly typed input the argument specs name below can make the plan fail: then the
            # specs' lines explain it, and this one is dropped (see below).
            plan, plan_problems = None, Problems([Problem("(plan)", text="cannot plan %s: %s" % (host, err))])
        if purpose == "teardown":
            plan_problems = Problems(p for p in plan_problems if _variable_root(p.variable).startswith("gpu_stack_")
                                     and p.variable not in SECRETS)
        plans[host] = plan
        if plan and purpose != "teardown":
            roles += [r for r in plan["roles"] if r not in roles]
        elif plan is None and purpose != "teardown":
            # No plan to say which roles the host runs: every stack role's spec names what it can.
            roles += [r for r in ("inference_engine", "gateway", "monitoring", "moderation") if r not in roles]
        specs = Problems()
        for role in roles:
            specs.extend(spec_problems(role, given))
        # One report line per problem: the plan's words where it has some for a variable (they say what
        # would be accepted), the argument spec's otherwise; a plan that failed on an input the specs
        # name is not reported on top of them.
        if specs:
            plan_problems = Problems(p for p in plan_problems if p.variable != "(plan)")
        explained = {_variable_root(p.variable) for p in plan_problems}
        found.extend(p for p in specs if _variable_root(p.variable) not in explained)
        for name, rule in VALUE_RULES.items():
            if name in given:
                found.check(name, given[name], rule)
        found.extend(plan_problems)
        settings = HostSettings(host, host_vars)
        if purpose in ("deploy", "rolling_update") and settings.get("gpu_stack_host_checks"):
            facts = settings.get("ansible_facts") or {}
            found.extend(host_problems(facts, plan or {}, settings))
        raw = raw_all.get(host) or {}
        seen = set()
        for problem in found:
            problem.host = host
            root = _variable_root(problem.variable)
            if not problem.source and root in raw:
                try:
                    problem.source = origin(raw[root])
                except Exception:  # noqa: BLE001
                    problem.source = ""
            key = (problem.variable, problem.line())
            if key not in seen:
                seen.add(key)
                problems.append(problem)
    return plans, problems, warnings


def report(problems, hosts) -> str:
    """One message: every problem of every host, grouped by host."""
    by_host: dict = {}
    for problem in problems:
        by_host.setdefault(problem.host, []).append(problem)
    lines = ["%d problem(s) with the inputs of %d of %d host(s); nothing was changed on any host:"
             % (len(problems), len(by_host), len(hosts))]
    for host in hosts:
        if host in by_host:
            lines.append("%s:" % host)
            lines += ["  - %s" % p.line() for p in by_host[host]]
    return "\n".join(lines)
