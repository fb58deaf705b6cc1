#!/usr/bin/env bash
# The gateway at scale (issue 9): the release `gateway` binary holding USERS logged-in users
# with fresh Check-in tokens and USERS running servers, each in its own process next to the
# test OpenID provider (Node, oidc-provider) and the Kubernetes API simulator (kubesim).
# gateway-scale logs the users in through the gateway, starts their servers, waits 1.5
# access-token lifetimes (so every token is refreshed in the background) and prints a
# markdown table: the gateway's RSS after each phase, refresh grants, their spread and the
# one-refresh-per-token check. Needs the test provider (.ci/install-peers).
#
#   benches/scripts/gateway-scale.sh [USERS] [ACCESS_TTL_S]
#
# Environment: CONCURRENCY (logins and spawns in flight, default 16), WAIT_LIFETIMES
# (default 1.5), READY_DELAY_MS (simulated pod start, default 200), NO_BUILD=1 to use the
# binaries already built.
set -euo pipefail
users=${1:-1000}
ttl=${2:-60}
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
if [[ -z ${NO_BUILD:-} ]]; then
    cargo build -q --release -p egi-test-harness --bin kubesim -p egi-examples --bin gateway \
        -p egi-benches --bin gateway-scale
fi
target=${CARGO_TARGET_DIR:-$root/target}/release

work=$(mktemp -d)
bench=
cleanup() {
    if [[ -n $bench ]]; then kill "$bench" 2>/dev/null || true; wait "$bench" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT
# The test provider keeps grants in oidc-provider's default memory adapter, an LRU of about
# 1,000-2,000 entries (sessions, codes, grants, refresh tokens): with 1,000 users it evicts the
# first users' grants and their refreshes fail with invalid_grant. A resolve hook, preloaded
# into Node through NODE_OPTIONS (inherited from gateway-scale), gives that adapter an
# unbounded LRU; nothing is changed on disk. (Check-in keeps every grant.)
cat >"$work/unbounded-lru.mjs" <<'JS'
import { register } from 'node:module';
const hooks = `
export async function resolve(specifier, context, next) {
  if (specifier === '../helpers/lru.js' && (context.parentURL || '').endsWith('/adapters/memory_adapter.js')) {
    const real = new URL(specifier, context.parentURL).href;
    const src = 'import LRU from ' + JSON.stringify(real)
      + '; export default class extends LRU { constructor(o) { super({ ...o, maxSize: 1e9 }); } }';
    return { url: 'data:text/javascript,' + encodeURIComponent(src), shortCircuit: true };
  }
  return next(specifier, context);
}`;
register('data:text/javascript,' + encodeURIComponent(hooks));
JS
export NODE_OPTIONS="--import=file://$work/unbounded-lru.mjs"
# gateway-scale starts the provider, kubesim and the gateway itself and stops them by PID.
"$target/gateway-scale" --gateway "$target/gateway" --kubesim "$target/kubesim" --dir "$work" \
    --users "$users" --access-ttl "$ttl" --concurrency "${CONCURRENCY:-16}" \
    --wait-lifetimes "${WAIT_LIFETIMES:-1.5}" --ready-delay-ms "${READY_DELAY_MS:-200}" &
bench=$!
status=0
wait "$bench" || status=$?
bench=
exit "$status"
