#!/usr/bin/env bash
# Pin the dependencies declared in pyproject.toml (`make lock`).
#
#   requirements-dev.lock  runtime + sandbox + dev (tests, linters): `make test`, `make lint`
#   requirements.lock      runtime + sandbox: `make demo`
#
# One resolution for both: the dev set is compiled first, keeping every pin it already has
# (uv prefers the versions in the output file), and the runtime set is then compiled
# starting from a copy of it, so each package has the same version in both files. Pass
# `--upgrade` (or `--upgrade-package NAME`) to move pins on purpose.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
UV="${UV:-.venv/bin/uv}"
common=(--python-version 3.11 --custom-compile-command "make lock" -q)

"$UV" pip compile pyproject.toml --extra dev -o requirements-dev.lock "${common[@]}" "$@"
cp requirements-dev.lock requirements.lock
"$UV" pip compile pyproject.toml --extra sandbox -o requirements.lock "${common[@]}"

# The runtime pins must be exactly the dev pins, package for package.
pins() { grep -E '^[A-Za-z0-9]' "$1" | sort; }
extra="$(comm -23 <(pins requirements.lock) <(pins requirements-dev.lock))"
if [[ -n "$extra" ]]; then
  printf 'lock: requirements.lock pins differ from requirements-dev.lock:\n%s\n' "$extra" >&2
  exit 1
fi
echo "lock: requirements-dev.lock ($(pins requirements-dev.lock | wc -l) pins)," \
     "requirements.lock ($(pins requirements.lock | wc -l) pins)"
