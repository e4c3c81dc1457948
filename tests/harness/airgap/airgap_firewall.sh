#!/bin/sh
# TEST TOOL (molecule/default's air-gap proof), run inside a test instance: its outbound network
# allows only the mirrors given, and every other try is refused at once and counted.
#   airgap_firewall.sh ADDR:PORT[,PORT...] ...     (the mirrors: the test registry, the Debian mirror)
# * The instance's own connections (chain LLMOPS-AIRGAP-OUT, from OUTPUT): loopback, replies, the
#   instance's own containers (any interface but eth0), DNS redirected to the trap and the mirrors
#   pass; any other new
#   connection is refused (REJECT) and counted by that rule's packet counter.
# * Its containers (DOCKER-USER, which Docker evaluates before its own rules and never flushes):
#   a new connection out through eth0 is refused and counted the same way.
# * Every DNS packet, from the instance or from a container, is redirected to the
#   trap on port 5353 (dns_trap.py), which answers REFUSED and logs the name: a lookup of any outside
#   host is a try, named.
# IPv6 is refused and counted alike (ip6tables). Re-running replaces the rules (idempotent).
# airgap_report reads the counters: `iptables -L LLMOPS-AIRGAP-OUT -v -x -n` (and DOCKER-USER).
set -eu
trap_port=5353

chain() {  # chain TOOL TABLE NAME: create or empty it
  "$1" -t "$2" -N "$3" 2>/dev/null || "$1" -t "$2" -F "$3"
}
jump() {  # jump TOOL TABLE FROM TO: the jump at the top of FROM, once
  "$1" -t "$2" -C "$3" -j "$4" 2>/dev/null || "$1" -t "$2" -I "$3" 1 -j "$4"
}

for tool in iptables ip6tables; do
  chain "$tool" filter LLMOPS-AIRGAP-OUT
  jump "$tool" filter OUTPUT LLMOPS-AIRGAP-OUT
  "$tool" -A LLMOPS-AIRGAP-OUT -o lo -j RETURN
  "$tool" -A LLMOPS-AIRGAP-OUT -m conntrack --ctstate ESTABLISHED,RELATED -j RETURN
  # redirected to the trap (a local port; the packet keeps the interface it was routed to first)
  "$tool" -A LLMOPS-AIRGAP-OUT -m conntrack --ctstate DNAT -j RETURN
  "$tool" -A LLMOPS-AIRGAP-OUT ! -o eth0 -j RETURN
  if [ "$tool" = iptables ]; then
    for allow in "$@"; do
      addr=${allow%%:*}
      ports=${allow#*:}
      iptables -A LLMOPS-AIRGAP-OUT -d "$addr" -p tcp -m multiport --dports "$ports" -j RETURN
    done
  fi
  "$tool" -A LLMOPS-AIRGAP-OUT -p tcp -j REJECT --reject-with tcp-reset
  "$tool" -A LLMOPS-AIRGAP-OUT -j REJECT

  # Docker creates DOCKER-USER when it starts and keeps what is in it; created here first, it is in
  # force from the first container on.
  "$tool" -t filter -N DOCKER-USER 2>/dev/null || true
  jump "$tool" filter FORWARD DOCKER-USER
  while "$tool" -D DOCKER-USER -m comment --comment llmops-airgap -m conntrack --ctstate ESTABLISHED,RELATED -j RETURN 2>/dev/null; do :; done
  while "$tool" -D DOCKER-USER -m comment --comment llmops-airgap -o eth0 -p tcp -j REJECT --reject-with tcp-reset 2>/dev/null; do :; done
  while "$tool" -D DOCKER-USER -m comment --comment llmops-airgap -o eth0 -j REJECT 2>/dev/null; do :; done
  "$tool" -I DOCKER-USER 1 -m comment --comment llmops-airgap -o eth0 -j REJECT
  "$tool" -I DOCKER-USER 1 -m comment --comment llmops-airgap -o eth0 -p tcp -j REJECT --reject-with tcp-reset
  "$tool" -I DOCKER-USER 1 -m comment --comment llmops-airgap -m conntrack --ctstate ESTABLISHED,RELATED -j RETURN

  chain "$tool" nat LLMOPS-AIRGAP-DNS
  jump "$tool" nat OUTPUT LLMOPS-AIRGAP-DNS
  jump "$tool" nat PREROUTING LLMOPS-AIRGAP-DNS
  for proto in udp tcp; do
    "$tool" -t nat -A LLMOPS-AIRGAP-DNS -p "$proto" --dport 53 -j REDIRECT --to-ports "$trap_port"
  done
done
