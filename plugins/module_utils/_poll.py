# -*- coding: utf-8 -*-
# Copyright: llmops.gpu_stack contributors
# Apache License 2.0 (see LICENSE)

# Note that this module util is **PRIVATE** to the collection. It can have breaking changes at any time.
# Do not use this from other collections or standalone plugins/modules!

"""Rounds and polling for ``llmops.gpu_stack.stack_health``: the checks of a round at once
(threads), dependent checks after the checks they need, and the loop until healthy or timed out
(clock and sleep injectable, so the loop is unit-tested without waiting).
Python 3.8+ syntax: module_utils run with the managed host's Python.
"""

from __future__ import annotations

import threading
import time

from ansible_collections.llmops.gpu_stack.plugins.module_utils._health_checks import (
    DEPENDS,
    component,
    failing_components,
)


def run_round(funcs):
    """Run the named check callables at once (threads); returns name -> component."""
    results = {}

    def call(name, func):
        try:
            results[name] = func()
        except Exception as err:  # pylint: disable=broad-except  # a bug must not hide other results
            results[name] = component(False, 0.0, {}, "check raised %s: %s" % (type(err).__name__, err))

    items = list(funcs.items())
    if len(items) == 1:
        call(*items[0])
        return results
    threads = [threading.Thread(target=call, args=item) for item in items]
    for thread in threads:
        thread.daemon = True
        thread.start()
    for thread in threads:
        thread.join()
    return results


def _run_with_dependencies(funcs, names, results, depends, runner):
    """One round over ``names``: the checks without dependencies first (at once), then each
    dependent check whose dependencies passed; the others get 'not run: X failing'."""
    first = [name for name in names if not depends.get(name)]
    fresh = runner({name: funcs[name] for name in first}) if first else {}
    merged = dict(results)
    merged.update(fresh)
    second = {}
    for name in names:
        if name in first:
            continue
        blocking = [dep for dep in depends[name] if dep in merged and not merged[dep]["ok"]]
        if blocking:
            fresh[name] = component(False, 0.0, {}, "not run: %s failing" % ", ".join(blocking))
        else:
            second[name] = funcs[name]
    if second:
        fresh.update(runner(second))
    return fresh


def poll(funcs, *, wait_timeout=0.0, poll_interval=0.2, depends=None, clock=time.monotonic, sleep=time.sleep, runner=run_round):
    """Check until every component is ok or ``wait_timeout`` seconds have passed.

    Round 1 runs every check. Later rounds re-run only the failing ones, ``poll_interval``
    apart. When none is failing any more, the checks that passed in earlier rounds are re-run
    at once (a confirmation round), so that a healthy answer rests on back-to-back rounds and a
    component that went down meanwhile is caught. ``wait_timeout`` 0 means a single round. The
    last round may end up to one request timeout after ``wait_timeout``.

    ``depends`` maps a check to the checks it needs (default :data:`DEPENDS`, restricted to the
    checks in ``funcs``): within a round it runs after them, and not at all while one of them
    fails.

    Returns ``{healthy, components, failing, attempts, elapsed}``.
    """
    order = list(funcs)
    if depends is None:
        depends = DEPENDS
    depends = {name: tuple(dep for dep in deps if dep in funcs) for name, deps in depends.items() if name in funcs}
    start = clock()
    results = {}
    attempts = 0
    to_run = order
    confirming = False
    healthy = False
    while True:
        attempts += 1
        fresh = _run_with_dependencies(funcs, to_run, results, depends, runner)
        results.update(fresh)
        failing = failing_components(results, order)
        if not failing:
            stale = [name for name in order if name not in fresh]
            if confirming or not stale:
                healthy = True
                break
            to_run = stale
            confirming = True
            continue
        confirming = False
        remaining = wait_timeout - (clock() - start)
        if remaining <= 0:
            break
        sleep(min(poll_interval, remaining))
        to_run = failing
    return {
        "healthy": healthy,
        "components": {name: results[name] for name in order},
        "failing": failing_components(results, order),
        "attempts": attempts,
        "elapsed": round(clock() - start, 3),
    }
