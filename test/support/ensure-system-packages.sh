#!/usr/bin/env bash
# Installs the Debian packages the integration and e2e tests need, and only those that are missing.
# Run by `npm test` (pretest) on a fresh Debian 12 machine as root; a no-op printing one line when all is there.
# Not root and something missing: says what and how to install it, then exits 0 (tests skip loudly),
# or 1 when CI is set (a skipped test must not pass CI).
set -euo pipefail

# command:package — every command the tests run, and the Debian package that ships it; arguments add
# more (`npm run bench` adds the peers it compares with: /usr/bin/aws:awscli rclone:rclone). A command
# given as an absolute path must be that file, not one of the same name elsewhere on PATH.
readonly NEEDED=(
  initdb:postgresql postgres:postgresql pg_ctl:postgresql pg_dump:postgresql pg_restore:postgresql psql:postgresql
  mariadbd:mariadb-server mariadb-install-db:mariadb-server mariadb:mariadb-client mariadb-dump:mariadb-client
  my_print_defaults:mariadb-client-core mkfifo:coreutils
  redis-server:redis-server redis-cli:redis-tools
  sqlite3:sqlite3 zstd:zstd pigz:pigz age:age age-keygen:age
  etcd:etcd-server etcdctl:etcd-client
  setpriv:util-linux
  "$@"
)
# Where Debian puts commands that are not on every PATH: daemons in sbin, PostgreSQL's per-major tools.
readonly EXTRA_DIRS=(/usr/local/sbin /usr/sbin /sbin)
readonly POSTGRES_LIB=/usr/lib/postgresql
# How long apt waits for a dpkg lock held by another install before giving up.
readonly DPKG_LOCK_TIMEOUT_SECONDS=300
readonly POLICY_RC=/usr/sbin/policy-rc.d
readonly POLICY_MARKER='# written by planb test/support/ensure-system-packages.sh'

have() {
  local name=$1 dir
  [[ $name == /* ]] && { [[ -x $name && -f $name ]]; return; }
  command -v "$name" >/dev/null 2>&1 && return 0
  for dir in "${EXTRA_DIRS[@]}" "$POSTGRES_LIB"/*/bin; do
    [[ -x "$dir/$name" && -f "$dir/$name" ]] && return 0
  done
  return 1
}

# Fills MISSING_COMMANDS and MISSING_PACKAGES (each package once, in NEEDED's order).
find_missing() {
  MISSING_COMMANDS=()
  MISSING_PACKAGES=()
  local entry name package known
  for entry in "${NEEDED[@]}"; do
    name=${entry%%:*}
    package=${entry#*:}
    have "$name" && continue
    MISSING_COMMANDS+=("$name")
    for known in "${MISSING_PACKAGES[@]}"; do
      [[ $known == "$package" ]] && continue 2
    done
    MISSING_PACKAGES+=("$package")
  done
}

# Cannot install: say so precisely; a failure only under CI.
cannot_install() {
  local why=$1
  {
    echo "ensure-system-packages: missing commands: ${MISSING_COMMANDS[*]}"
    echo "ensure-system-packages: $why; install them with:"
    echo "  sudo apt-get update && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${MISSING_PACKAGES[*]}"
  } >&2
  if [[ -n ${CI:-} ]]; then
    echo "ensure-system-packages: CI is set, so this is an error" >&2
    exit 1
  fi
  echo "ensure-system-packages: tests that need them will be skipped" >&2
  exit 0
}

# Packages' maintainer scripts must not start system services: the tests start their own servers.
# policy-rc.d exit 101 is Debian's switch for that; a file already there is left as it is.
block_service_starts() {
  [[ -e $POLICY_RC ]] && return 0
  printf '#!/bin/sh\n%s\nexit 101\n' "$POLICY_MARKER" >"$POLICY_RC"
  chmod 0755 "$POLICY_RC"
  trap unblock_service_starts EXIT
}

unblock_service_starts() {
  if [[ -f $POLICY_RC ]] && grep -qxF "$POLICY_MARKER" "$POLICY_RC"; then rm -f "$POLICY_RC"; fi
}

find_missing
if ((${#MISSING_COMMANDS[@]} == 0)); then
  echo "ensure-system-packages: all ${#NEEDED[@]} commands present"
  exit 0
fi

if ((EUID != 0)); then cannot_install "not root"; fi
if ! command -v apt-get >/dev/null 2>&1; then cannot_install "no apt-get on this host"; fi

echo "ensure-system-packages: installing ${MISSING_PACKAGES[*]} (missing: ${MISSING_COMMANDS[*]})"
readonly INSTALLING=("${MISSING_PACKAGES[@]}")
block_service_starts
export DEBIAN_FRONTEND=noninteractive
apt-get -o "DPkg::Lock::Timeout=$DPKG_LOCK_TIMEOUT_SECONDS" update -qq
apt-get -o "DPkg::Lock::Timeout=$DPKG_LOCK_TIMEOUT_SECONDS" install -y -qq --no-install-recommends "${INSTALLING[@]}"

find_missing
if ((${#MISSING_COMMANDS[@]} > 0)); then
  echo "ensure-system-packages: still missing after installing: ${MISSING_COMMANDS[*]}" >&2
  exit 1
fi
echo "ensure-system-packages: installed ${INSTALLING[*]}; all ${#NEEDED[@]} commands present"
