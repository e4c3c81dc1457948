"""The air-gap proof: the whole deploy reached nothing but its mirrors (pytest-testinfra).

From the end of prepare on (molecule/_shared/prepare_airgap.yml), the instance's outbound network
allowed only the local test registry and the Debian mirror of its apt configuration (tcp 80/443 to
the address pinned in /etc/hosts); the stand-in ModelScope hub, the stand-in NVIDIA repository and
the PyPI mirror of the client's lock are on its loopback. Every other new connection, from the
instance or from a container of its dockerd, was refused at once and counted by a REJECT rule's
packet counter; every DNS lookup was answered REFUSED by the trap and logged by name. Since then the
real site.yml converged, ran again (idempotence), ran at -vvv and with --check --diff (side effect),
and the stack answered. Goal: zero tries outside the mirrors, named when not zero.

Then the control: a lookup and a refused connection from the instance and from a container must
show up in the log and in the counters, or the zeros above prove nothing.
"""

import json
import re

REGISTRY_UNLISTED_PORT = 9  # the registry container's address, on a port the proof does not allow


def rules(host, tool, chain, table="filter"):
    """[(packets, target, the rule's text)] of a chain, from `iptables -L -v -x -n`."""
    out = host.check_output(f"{tool} -t {table} -L {chain} -v -x -n")
    rows = []
    for line in out.splitlines()[2:]:
        fields = line.split()
        if len(fields) >= 3 and fields[0].isdigit():
            rows.append((int(fields[0]), fields[2], " ".join(fields[2:])))
    return rows


def refused(host):
    """Packets refused by the proof's REJECT rules: {where: count}."""
    counts = {}
    for tool in ("iptables", "ip6tables"):
        counts[f"{tool} instance"] = sum(p for p, target, _text in rules(host, tool, "LLMOPS-AIRGAP-OUT") if target == "REJECT")
        counts[f"{tool} containers"] = sum(p for p, target, text in rules(host, tool, "DOCKER-USER")
                                           if target == "REJECT" and "llmops-airgap" in text)
    return counts


def lookups(host):
    text = host.file("/var/log/llmops-airgap/dns.log").content_string
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def mirror_names(host):
    """The apt mirrors' host names prepare pinned in /etc/hosts, and the SRV names apt asks for them
    (apt looks up `_http._tcp.<mirror>` before it connects; a lookup of an allowed mirror's own name
    is not a try outside the mirrors)."""
    block = re.search(r"# BEGIN llmops test: the apt mirrors.*?\n(.*?)# END", host.file("/etc/hosts").content_string, re.S)
    assert block, "prepare_airgap.yml pinned no mirror in /etc/hosts"
    names = {line.split()[1] for line in block.group(1).splitlines() if line.strip()}
    return names | {f"_{scheme}._tcp.{name}" for name in names for scheme in ("http", "https")}


def registry(host):
    """The test registry's address, as prepare gave it to the instance's dockerd (insecure-registries)."""
    daemon = json.loads(host.file("/etc/docker/daemon.json").content_string)
    registries = [r for r in daemon.get("insecure-registries", []) if r.rsplit(":", 1)[-1].isdigit()]
    assert len(registries) == 1, daemon.get("insecure-registries")
    return registries[0].rsplit(":", 1)[0]


def test_the_deploy_tried_nothing_but_its_mirrors_and_the_trap_sees_a_try(host):
    # The proof was in force: its chains are where packets pass, and the deploy's traffic went
    # through the allowed paths (the registry's images, the Debian mirror's packages).
    assert "-j LLMOPS-AIRGAP-OUT" in host.check_output("iptables -S OUTPUT")
    assert "-j DOCKER-USER" in host.check_output("iptables -S FORWARD")
    allowed = {text: p for p, target, text in rules(host, "iptables", "LLMOPS-AIRGAP-OUT") if "multiport" in text}
    assert len(allowed) >= 2 and all(allowed.values()), f"an allowed path carried no connection: {allowed}"

    tries = refused(host)
    mirrors = mirror_names(host)
    names = [n for n in lookups(host) if n["name"] not in mirrors]
    assert sum(tries.values()) == 0 and not names, (
        f"the deploy tried to reach outside its mirrors: refused packets {tries}; "
        f"DNS lookups {sorted({(n['client'], n['name']) for n in names})}")

    # The control: a try from the instance and one from a container are seen.
    addr = registry(host)
    assert host.run("getent hosts llmops-airgap-control-1.invalid").rc != 0
    probe = host.run(f"python3 -c 'import socket; socket.create_connection((\"{addr}\", {REGISTRY_UNLISTED_PORT}), 5)'")
    assert "ConnectionRefusedError" in probe.stderr, probe.stderr
    container = "litellm-proxy"
    host.run(f"docker exec {container} python3 -c "
             "'import socket; socket.getaddrinfo(\"llmops-airgap-control-2.invalid\", 443)'")
    probe = host.run(f"docker exec {container} python3 -c "
                     f"'import socket; socket.create_connection((\"{addr}\", {REGISTRY_UNLISTED_PORT}), 5)'")
    assert "ConnectionRefusedError" in probe.stderr, probe.stderr

    after = refused(host)
    assert after["iptables instance"] >= 1 and after["iptables containers"] >= 1, after
    seen = {n["name"] for n in lookups(host)}
    assert {"llmops-airgap-control-1.invalid", "llmops-airgap-control-2.invalid"} <= seen, seen
    # the container's lookup came through its bridge, not from the instance itself
    bridge = [n for n in lookups(host) if n["name"] == "llmops-airgap-control-2.invalid"]
    assert all(not re.match(r"^127\.", n["client"]) for n in bridge), bridge
