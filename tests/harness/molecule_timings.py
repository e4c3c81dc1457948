"""Print the idempotent re-run time of site.yml beside a no-op play, from a molecule log.

molecule/default enables the llmops_timer callback; its stages are converge,
idempotence (site.yml again, must change nothing) and side_effect, whose first play
("No-op play that only gathers facts", from noop.yml) is the no-op; the callback times each play
too. The performance goal is idempotence <= 2 x no-op. After that table, the slowest tasks of every
scenario and stage (the callback names each task of 5 s or more), to show where the suite's time goes.
Usage: python3 molecule_timings.py LOGFILE
"""

from __future__ import annotations

import json
import re
import sys

# molecule prints "[default > converge] Executing" without a TTY, "default ➜ converge: Executing" with one.
STAGE = re.compile(r"(?:\[([\w-]+) > (\w+)\]|([\w-]+)\s+\S+\s+(\w+):) Executing")
TIMER = re.compile(r"llmops-timer playbook=(\S+) seconds=([0-9.]+)")
PLAY_TIMER = re.compile(r'llmops-timer play=("(?:[^"\\]|\\.)*") seconds=([0-9.]+)')
TASK_TIMER = re.compile(r'llmops-timer task=("(?:[^"\\]|\\.)*") seconds=([0-9.]+)')
SLOWEST = 15
NOOP_PLAY = "No-op play that only gathers facts"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def staged(lines):
    """Yield (scenario, stage) or None, and each line without colours, for the lines that are not stage lines."""
    current = None
    for raw in lines:
        line = ANSI.sub("", raw)
        stage = STAGE.search(line)
        if stage:
            current = (stage.group(1) or stage.group(3), stage.group(2) or stage.group(4))
            continue
        yield current, line


def parse(lines):
    """Return {(scenario, stage): seconds} from molecule output lines."""
    times = {}
    for current, line in staged(lines):
        play = PLAY_TIMER.search(line)
        if play and current and json.loads(play.group(1)) == NOOP_PLAY:
            times[(current[0], "noop")] = times.get((current[0], "noop"), 0.0) + float(play.group(2))
            continue
        timer = TIMER.search(line)
        if timer and current:
            times[current] = times.get(current, 0.0) + float(timer.group(2))
    return times


def slowest(lines, count=SLOWEST):
    """Return the `count` slowest tasks as (seconds, scenario, stage, task), slowest first."""
    tasks = []
    for current, line in staged(lines):
        task = TASK_TIMER.search(line)
        if task:
            scenario, stage = current or ("?", "?")
            tasks.append((float(task.group(2)), scenario, stage, json.loads(task.group(1))))
    return sorted(tasks, reverse=True)[:count]


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    with open(argv[1], encoding="utf-8", errors="replace") as handle:
        lines = handle.readlines()
    times = parse(lines)
    scenarios = sorted({key[0] for key in times})
    print("| scenario | converge (s) | idempotent re-run (s) | no-op fact gathering (s) | ratio |")
    print("| --- | --- | --- | --- | --- |")
    for scenario in scenarios:
        conv = times.get((scenario, "converge"))
        idem = times.get((scenario, "idempotence"))
        noop = times.get((scenario, "noop"), times.get((scenario, "side_effect")))
        ratio = f"{idem / noop:.2f}x" if idem and noop else "n/a"

        def fmt(value):
            return f"{value:.1f}" if value is not None else "n/a"

        print(f"| {scenario} | {fmt(conv)} | {fmt(idem)} | {fmt(noop)} | {ratio} |")
    tasks = slowest(lines)
    if tasks:
        print()
        print(f"The {len(tasks)} slowest tasks (all hosts of a task together):")
        print("| seconds | scenario | stage | task |")
        print("| --- | --- | --- | --- |")
        for seconds, scenario, stage, task in tasks:
            print(f"| {seconds:.1f} | {scenario} | {stage} | {task} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
