#!/usr/bin/env bash
# Bootstrap a fresh Debian/Ubuntu machine (or refresh an existing checkout) for Paitho.
#  - distribution packages (PostgreSQL server with contrib, HAProxy) when missing: detected, not assumed
#  - an unprivileged system user for tenant clusters when run as root (PostgreSQL refuses root)
#  - a virtual environment at .venv with the pinned Python packages and the `paitho` CLI
# Idempotent: a stamp file records the requirement files' hash so a second run is a no-op.
set -euo pipefail
cd "$(dirname "$0")/../.."

log() { printf 'bootstrap: %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    log "need root to run: $*  (install sudo or run this as root)"; return 1; fi
}

pg_bindir() {
  local d
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/initdb" ] && [ -x "$d/postgres" ] && { echo "$d"; return 0; }
  done
  command -v pg_config >/dev/null && [ -x "$(pg_config --bindir)/initdb" ] && { pg_config --bindir; return 0; }
  return 1
}

have_pgcrypto() {
  local bindir="$1" sharedir
  sharedir="$("$bindir/pg_config" --sharedir 2>/dev/null || true)"
  [ -z "$sharedir" ] && sharedir="$(dirname "$(dirname "$bindir")")/../../share/postgresql/$(basename "$(dirname "$bindir")")"
  ls /usr/share/postgresql/*/extension/pgcrypto.control >/dev/null 2>&1 || [ -f "$sharedir/extension/pgcrypto.control" ]
}

missing=()
if bindir="$(pg_bindir)"; then
  have_pgcrypto "$bindir" || missing+=(postgresql-contrib)
else
  missing+=(postgresql postgresql-contrib)
fi
command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || missing+=(haproxy)
command -v ssh-keygen >/dev/null || missing+=(openssh-client)
[ -x /usr/sbin/sshd ] || missing+=(openssh-server)
command -v openssl >/dev/null || missing+=(openssl)
command -v wrk >/dev/null || missing+=(wrk)
[ -x /usr/sbin/dovecot ] || missing+=(dovecot-imapd)
command -v chromium >/dev/null || missing+=(chromium)  # control-plane browser tests (Playwright drives it)
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing distribution packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get update -qq
  as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Debian's postgresql package creates and starts a default cluster we do not use.
  as_root sh -c 'command -v pg_lsclusters >/dev/null && pg_lsclusters -h | while read -r v c _; do pg_ctlcluster "$v" "$c" stop 2>/dev/null || true; done' || true
fi

if [ "$(id -u)" -eq 0 ] && ! id paitho >/dev/null 2>&1; then
  log "creating the unprivileged system user 'paitho' that runs tenant clusters"
  useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin paitho
fi

PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  log "creating .venv"
  "$PY" -m venv .venv || { as_root apt-get install -y -qq python3-venv >/dev/null && "$PY" -m venv .venv; }
fi
stamp=.venv/.paitho-bootstrap
want="$(cat requirements.txt tenant_image/requirements.txt requirements-dev.txt pyproject.toml | sha256sum | cut -c1-16)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  log "installing Python packages into .venv"
  .venv/bin/python -m pip install -q 'pip>=24,<26.3' >/dev/null
  .venv/bin/python -m pip install -q -r requirements.txt -r tenant_image/requirements.txt -r requirements-dev.txt
  .venv/bin/python -m pip install -q --no-deps --no-build-isolation -e .
  echo "$want" > "$stamp"
fi
