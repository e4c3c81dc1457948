# -*- coding: utf-8 -*-
# Copyright: llmops.gpu_stack contributors
# Apache License 2.0 (see LICENSE)
"""Value rules that an argument spec cannot express (ranges, patterns, formats).

Note that this plugin util is **PRIVATE** to the collection. It can have breaking changes at any time.
Do not use this from other collections or standalone plugins/modules!

Each check returns None when the value is fine, else the sentence "what would be accepted" that
the validation report puts after the variable's name and the value given.
"""

from __future__ import annotations

import ipaddress
import math
import re

# Image reference: [registry[:port]/]path[:tag][@sha256:<64 hex>] (the distribution reference grammar, simplified).
_IMAGE = re.compile(
    r"^(?:(?P<registry>[A-Za-z0-9.-]+(?::[0-9]+)?|\[[0-9a-fA-F:]+\](?::[0-9]+)?)/)?"
    r"(?P<path>[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
    r"(?:@(?P<digest>sha256:[0-9a-f]{64}))?$"
)
# Prometheus durations (1h30m, 15s, 2w) and sizes (512MB).
_DURATION = re.compile(r"^(?:[0-9]+(?:ms|s|m|h|d|w|y))+$")
_SIZE = re.compile(r"^[0-9]+(?:\.[0-9]+)?(?:B|KB|MB|GB|TB|PB|EB)$")
# Docker sizes (shm_size): 4g, 512m, 1073741824.
_DOCKER_SIZE = re.compile(r"^[0-9]+(?:\.[0-9]+)?[bkmgBKMG]?$")
_ALIAS = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_SERVICE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_UNITS = {"b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def is_int(value) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, str) and re.fullmatch(r"[0-9]+", value.strip() or "x") is not None


def port(value):
    if not is_int(value) or not 1 <= int(value) <= 65535:
        return "a TCP port, a whole number from 1 to 65535"
    return None


def positive_int(value):
    if not is_int(value) or int(value) < 1:
        return "a whole number of 1 or more"
    return None


def non_negative_int(value):
    if not is_int(value) or int(value) < 0:
        return "a whole number of 0 or more"
    return None


def positive_number(value):
    """A number above 0 (a threshold in seconds, say)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return "a number above 0, e.g. 2.5"
    if isinstance(value, bool) or not math.isfinite(number) or number <= 0:
        return "a number above 0, e.g. 2.5"
    return None


def fraction(value):
    """A share of GPU memory: strictly between 0 and 1."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return "a number between 0 and 1 (exclusive), e.g. 0.9"
    if isinstance(value, bool) or not 0 < number < 1:
        return "a number between 0 and 1 (exclusive), e.g. 0.9"
    return None


def image_ref(value):
    text = "" if value is None else str(value)
    if not text.strip():
        return "an image reference such as vllm/vllm-openai:v0.32.0 or name:tag@sha256:<digest> (not empty)"
    if not _IMAGE.match(text) or (":" not in text.rsplit("/", 1)[-1] and "@" not in text):
        return "an image reference with a tag or a digest, e.g. redis:7.2.11-alpine or name:tag@sha256:<64 hex>"
    return None


def prometheus_duration(value):
    if value is None or not _DURATION.match(str(value)):
        return "a Prometheus duration such as 15s, 5m, 1h30m or 15d"
    return None


def prometheus_retention(value):
    if value is not None and (_DURATION.match(str(value)) or _SIZE.match(str(value))):
        return None
    return "a Prometheus duration such as 15d (or a size such as 50GB)"


def docker_size(value):
    if value is None or not _DOCKER_SIZE.match(str(value).strip()) or docker_size_bytes(value) <= 0:
        return "a size Docker accepts, e.g. 4g, 512m (more than 0)"
    return None


def docker_size_bytes(value) -> int:
    text = str(value).strip().lower()
    unit = text[-1] if text and text[-1] in _UNITS else "b"
    number = text[:-1] if text and text[-1] in _UNITS else text
    try:
        return int(float(number) * _UNITS[unit])
    except ValueError:
        return 0


def alias(value):
    if not isinstance(value, str) or not _ALIAS.match(value):
        return "a model name of letters, digits and . _ - (starting with a letter or digit), e.g. qwen3-8b"
    return None


def service_name(value):
    if not isinstance(value, str) or not _SERVICE.match(value):
        return "a Compose service name of lower-case letters, digits, - and _, e.g. inference-engine-2"
    return None


def sql_identifier(value):
    if not isinstance(value, str) or not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", value):
        return "a lower-case SQL name: letters, digits and _, not starting with a digit, at most 63 characters"
    return None


def absolute_path(value):
    text = "" if value is None else str(value)
    if not text.startswith("/") or "/../" in text + "/" or text.endswith("/.") or "//" in text:
        return "an absolute, normalised path (starting with /, no .. or //)"
    return None


def ip_address(value):
    try:
        ipaddress.ip_address(str(value))
    except ValueError:
        return "an IP address"
    return None


def ipv4_source(value):
    try:
        ipaddress.IPv4Network(str(value), strict=False)
    except ValueError:
        return "an IPv4 address or CIDR (the firewall manages IPv4 only)"
    return None
