#!/usr/bin/env bash
# Install the non-Python tools Junction's tests need. Idempotent: safe to run on every
# CI run and by hand; it only does work when something is missing or out of date.
#
#   * Debian packages: prometheus-alertmanager (real Alertmanager for the alerting
#     tests), prometheus and prometheus-blackbox-exporter (the peer stack of
#     bench/detection.py), chromium (headless browser checks) and postgresql (the
#     production Prefect backend: tests/pg.py runs a throw-away cluster of its own with
#     initdb/postgres from /usr/lib/postgresql/<version>/bin). Installed only when
#     missing, never started as services (policy-rc.d below: no cluster is started).
#   * npm packages from package-lock.json (Stoplight Prism for the contract tests),
#     via `npm ci`, only when node_modules is missing or older than the lockfile.
#
# Environment:
#   JUNCTION_SKIP_APT=1   skip the Debian packages step (e.g. on a non-Debian laptop).
#
# Exits non-zero with a message saying what could not be installed.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"

log() { printf 'install-system-deps: %s\n' "$*"; }
die() { printf 'install-system-deps: ERROR: %s\n' "$*" >&2; exit 1; }

# --------------------------------------------------------------------------- Debian
# package name -> file that proves it is installed
declare -A APT_CHECK=(
  [prometheus-alertmanager]=/usr/bin/prometheus-alertmanager
  [prometheus]=/usr/bin/prometheus
  [prometheus-blackbox-exporter]=/usr/bin/prometheus-blackbox-exporter
  [chromium]=/usr/bin/chromium
  [postgresql]=/usr/bin/pg_ctlcluster
)

SUDO=()
POLICY=/usr/sbin/policy-rc.d
CREATED_POLICY=0

# Remove the policy-rc.d this script wrote (runs on exit too, via trap).
cleanup_policy() {
  if [[ "$CREATED_POLICY" == "1" ]]; then
    "${SUDO[@]}" rm -f "$POLICY"
    CREATED_POLICY=0
  fi
}

# The server binaries (initdb, postgres) of Debian's postgresql-<version> package.
have_initdb() {
  compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null
}

install_apt_packages() {
  local missing=()
  local pkg
  for pkg in prometheus-alertmanager prometheus prometheus-blackbox-exporter chromium postgresql; do
    if [[ -x "${APT_CHECK[$pkg]}" ]] && { [[ "$pkg" != postgresql ]] || have_initdb; }; then
      log "$pkg already installed (${APT_CHECK[$pkg]})"
    else
      missing+=("$pkg")
    fi
  done
  if [[ ${#missing[@]} -eq 0 ]]; then
    return 0
  fi
  if [[ "${JUNCTION_SKIP_APT:-0}" == "1" ]]; then
    log "JUNCTION_SKIP_APT=1: not installing missing Debian packages: ${missing[*]}"
    return 0
  fi

  SUDO=()
  if [[ "$(id -u)" -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
      SUDO=(sudo -n)
    else
      die "missing Debian packages (${missing[*]}) and not root, and sudo is not available" \
          "without a password. Install them with: sudo apt-get install -y --no-install-recommends ${missing[*]}"
    fi
  fi
  command -v apt-get >/dev/null 2>&1 \
    || die "missing ${missing[*]} and apt-get is not available on this machine: install them by hand"

  # Never start services from package maintainer scripts: a policy-rc.d that says 101
  # ("action forbidden") is the Debian-standard way. Keep an existing one untouched.
  if [[ ! -e "$POLICY" ]]; then
    printf '#!/bin/sh\n# temporary, written by Junction scripts/install-system-deps.sh\nexit 101\n' \
      | "${SUDO[@]}" tee "$POLICY" >/dev/null
    "${SUDO[@]}" chmod 0755 "$POLICY"
    CREATED_POLICY=1
  fi
  trap cleanup_policy EXIT

  local apt_env=(env DEBIAN_FRONTEND=noninteractive)
  local install=(apt-get install -y -qq --no-install-recommends "${missing[@]}")
  log "installing Debian packages: ${missing[*]}"
  if ! "${SUDO[@]}" "${apt_env[@]}" "${install[@]}"; then
    log "apt-get install failed; running apt-get update and retrying"
    "${SUDO[@]}" "${apt_env[@]}" apt-get update -qq \
      || die "apt-get update failed; cannot install ${missing[*]}"
    "${SUDO[@]}" "${apt_env[@]}" "${install[@]}" \
      || die "apt-get install ${missing[*]} failed"
  fi
  if [[ " ${missing[*]} " == *" postgresql "* ]]; then
    have_initdb || die "postgresql was installed but /usr/lib/postgresql/*/bin/initdb is missing"
  fi
  for pkg in "${missing[@]}"; do
    [[ -x "${APT_CHECK[$pkg]}" ]] \
      || die "$pkg was installed but ${APT_CHECK[$pkg]} is still missing"
    log "$pkg installed (${APT_CHECK[$pkg]})"
  done

  cleanup_policy
  trap - EXIT
}

# --------------------------------------------------------------------------- npm
install_npm_packages() {
  command -v node >/dev/null 2>&1 || die "node is not installed (Node >= 20 is needed for Prism)"
  command -v npm >/dev/null 2>&1 || die "npm is not installed (needed to install Prism)"
  [[ -f package-lock.json ]] || die "package-lock.json is missing in $REPO_ROOT"

  local reason=""
  if [[ ! -x node_modules/.bin/prism ]]; then
    reason="node_modules/.bin/prism is missing"
  elif [[ ! -f node_modules/uplot/dist/uPlot.iife.min.js || ! -f node_modules/htmx.org/dist/htmx.min.js ]]; then
    reason="the dashboard's uPlot or htmx is missing"
  elif [[ ! -f node_modules/.package-lock.json ]]; then
    reason="node_modules/.package-lock.json is missing"
  elif [[ package-lock.json -nt node_modules/.package-lock.json ]]; then
    reason="package-lock.json is newer than node_modules"
  fi
  if [[ -z "$reason" ]]; then
    log "npm packages up to date (prism $(node_modules/.bin/prism --version 2>/dev/null || echo '?'))"
    return 0
  fi

  log "running npm ci ($reason)"
  npm ci --no-audit --no-fund || die "npm ci failed"
  [[ -x node_modules/.bin/prism ]] || die "npm ci finished but node_modules/.bin/prism is missing"
  log "npm packages installed (prism $(node_modules/.bin/prism --version))"
}

install_apt_packages
install_npm_packages
log "done"
