#!/bin/bash
# The feed of deploy/kubernetes/gateway-api: writes what the cluster holds for tcpmap
# (Gateway API resources, Emissary's TCPMapping/Host/TLSContext/Listener/Module, Namespaces,
# Services and the TLS Secrets) to $FEED_DIR/cluster.yaml as `kubectl get … -o yaml` prints it,
# for tcpmap's file watch. The file is replaced atomically (written beside it, renamed over it)
# and only when it changed, so tcpmap reloads only on a change. A kind the cluster does not
# serve (a CRD that is not installed) is skipped; any other kubectl failure keeps the last
# file. `feed.sh once` writes once and exits non-zero if it could not (the init container, so
# tcpmap starts with a config); `feed.sh` repeats every $FEED_INTERVAL seconds (the sidecar).
set -u
dir=${FEED_DIR:-/var/run/tcpmap-feed}
interval=${FEED_INTERVAL:-10}
kubectl=${KUBECTL:-kubectl}
# The file holds private keys: readable by this user only (tcpmap runs as the same user).
umask 077

kinds=(
  gatewayclasses.gateway.networking.k8s.io
  gateways.gateway.networking.k8s.io
  tlsroutes.gateway.networking.k8s.io
  tcproutes.gateway.networking.k8s.io
  referencegrants.gateway.networking.k8s.io
  tcpmappings.getambassador.io
  hosts.getambassador.io
  tlscontexts.getambassador.io
  listeners.getambassador.io
  modules.getambassador.io
  namespaces
  services
)

# Appends `kubectl get ARGS -o yaml` to $new after a `---`; a kind the server does not serve is
# skipped with a note, any other failure fails.
part() {
  if ! "$kubectl" get "$@" -o yaml >"$dir/.part" 2>"$dir/.err"; then
    if grep -q "doesn't have a resource type" "$dir/.err"; then
      echo "feed: $1: not served by this cluster; skipped" >&2
      return 0
    fi
    echo "feed: kubectl get $*: $(cat "$dir/.err")" >&2
    return 1
  fi
  printf -- '---\n' >>"$new" && cat "$dir/.part" >>"$new"
}

snapshot() {
  new="$dir/.cluster.yaml.new"
  : >"$new" || return 1
  for kind in "${kinds[@]}"; do
    part "$kind" --all-namespaces || return 1
  done
  # Only TLS Secrets: the ones a certificateRef or a Host can use.
  part secrets --all-namespaces --field-selector type=kubernetes.io/tls || return 1
  if cmp -s "$new" "$dir/cluster.yaml"; then
    rm -f "$new"
  else
    mv -f "$new" "$dir/cluster.yaml" && echo "feed: cluster.yaml updated" >&2
  fi
}

if [ "${1:-}" = once ]; then
  snapshot
  exit
fi
while true; do
  snapshot || echo "feed: keeping the last cluster.yaml" >&2
  sleep "$interval"
done
