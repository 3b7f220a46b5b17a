#!/bin/bash
# Build (or find) the Debian 13 (trixie) root that the end-to-end suite runs CRIU and Podman in.
# See ../shared/docs/REAL-RUNTIMES.md for why: Debian 12's CRIU cannot dump on this kernel.
#
#   test/e2e/root.sh            build it if needed; print its path on the last line of stdout
#   test/e2e/root.sh --path     print the path of the current root if it is built, else exit 1
#   test/e2e/root.sh --key      print the cache key
#   test/e2e/root.sh --prune    remove every cached root but the current one
#
# The root lives in $CKPT_E2E_CACHE (default /var/cache/ckpt-e2e) as root-<key>, where the key
# hashes the package list (test/e2e/root-packages.txt), the suite, the architecture and
# ROOT_FORMAT below (bump it when the set-up steps change). A root is built in build-<key>.<pid>
# and renamed to root-<key> only when complete, so a failed build never looks complete; a lock
# makes concurrent calls wait for each other instead of building twice.
#
# Environment: CKPT_E2E_CACHE, CKPT_E2E_MIRROR (default: the Debian mirror of this machine's apt
# sources, else http://deb.debian.org/debian).
set -euo pipefail

ROOT_FORMAT=2            # bump when the configuration or the base image below changes
SUITE=trixie
BASE_IMAGE=localhost/bbox:motd

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${CKPT_E2E_CACHE:-/var/cache/ckpt-e2e}
pkgfile="$here/root-packages.txt"

log() { echo "root.sh: $*" >&2; }
die() { echo "root.sh: $*" >&2; exit 1; }

# Remove a root or a half-built one: first detach whatever a killed debootstrap left mounted in it.
remove_tree() { # DIR
  local m
  while read -r m; do umount -l "$m" 2>/dev/null || true; done < <(
    awk -v d="$1/" 'index($2, d) == 1 { print $2 }' /proc/self/mounts | sort -r)
  rm -rf --one-file-system "$1" || log "could not remove all of $1"
}

packages() { sed 's/#.*//; s/[[:space:]]//g; /^$/d' "$pkgfile" | LC_ALL=C sort -u; }

arch=$(dpkg --print-architecture)
key=$( { echo "format=$ROOT_FORMAT suite=$SUITE arch=$arch"; packages; } | sha256sum | cut -c1-16)
final="$cache/root-$key"

case ${1:-} in
  --key) echo "$key"; exit 0 ;;
  --path) [[ -f $final/.ckpt-e2e-complete ]] || exit 1; echo "$final"; exit 0 ;;
  --prune|'') ;;
  *) die "unknown argument '$1' (see the header of $0)" ;;
esac

[[ $(id -u) == 0 ]] || die "must run as root (debootstrap, mounts)"
command -v debootstrap >/dev/null || die "debootstrap is not installed (apt-get install debootstrap)"

mirror=${CKPT_E2E_MIRROR:-}
if [[ -z $mirror ]]; then
  # The first Debian archive URI of this machine's apt sources (deb822 or one-line style).
  mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null |
    grep -oE 'https?://[^ ]+/debian/?( |$)' | grep -v -- '-security' | head -n1 | tr -d ' ' || true)
  mirror=${mirror:-http://deb.debian.org/debian}
fi

mkdir -p "$cache"
exec 9>"$cache/lock"
if ! flock -n 9; then
  log "another root.sh holds $cache/lock; waiting (up to 30 min)"
  flock -w 1800 9 || die "timed out waiting for $cache/lock"
fi

prune_others() {
  local d
  for d in "$cache"/root-* "$cache"/build-*; do
    [[ -d $d && $d != "$final" ]] || continue
    if [[ $d == "$cache"/root-* ]] && ! flock -n "$d.lock" true 2>/dev/null; then
      log "keeping $d: a session is using it"; continue
    fi
    log "removing $d"
    remove_tree "$d"; rm -f "$d.lock" "$d.session"
  done
}

if [[ ${1:-} == --prune ]]; then prune_others; exit 0; fi

if [[ -f $final/.ckpt-e2e-complete ]]; then
  echo "$final"
  exit 0
fi

# Leftovers of builds that died (we hold the lock, so nobody else is building).
for d in "$cache"/build-*; do if [[ -e $d ]]; then log "removing unfinished $d"; remove_tree "$d"; fi; done

build="$cache/build-$key.$$"
trap 'rc=$?; if ((rc)); then log "build failed (exit $rc); removing $build"; remove_tree "$build"; fi' EXIT
mkdir -p "$build" "$cache/debs"

started=$(date +%s)
include=$(packages | paste -sd, -)
log "debootstrap $SUITE from $mirror into $build (packages: $include)"
debootstrap --variant=minbase --arch="$arch" --include="$include" --cache-dir="$cache/debs" \
  "$SUITE" "$build" "$mirror" >"$cache/debootstrap.log" 2>&1 ||
  die "debootstrap failed; the end of $cache/debootstrap.log:
$(tail -n 20 "$cache/debootstrap.log")"
log "debootstrap took $(( $(date +%s) - started )) s"

# --- configuration (REAL-RUNTIMES.md) -----------------------------------------------------------
mkdir -p "$build/etc/containers/registries.conf.d" "$build/oldroot" "$build/e2e"
cat >"$build/etc/containers/containers.conf" <<'EOF'
# ckpt end-to-end root: crun refuses hybrid cgroups, systemd is not running.
[containers]
netns = "none"

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
runtime = "runc"
EOF
cat >"$build/etc/containers/registries.conf" <<'EOF'
# ckpt end-to-end root: nothing is pulled from the internet. The suite adds one
# registries.conf.d/ckpt-e2e-PORT.conf per test registry (insecure = true).
unqualified-search-registries = []
short-name-mode = "permissive"
EOF
[[ -f $build/etc/containers/policy.json ]] || cat >"$build/etc/containers/policy.json" <<'EOF'
{ "default": [ { "type": "insecureAcceptAnything" } ] }
EOF
rm -f "$build"/var/cache/apt/archives/*.deb

# CRIU stops a task after its parasite's rt_sigreturn with an x86 hardware breakpoint. In this
# kind of VM (Firecracker) debug registers never fire, so every `criu dump` hangs for ever after
# "new_sp=... ip ..." in its log (and `criu check` still says "Looks good"). CRIU's fault-injection
# code 130 (FI_NO_BREAKPOINTS) makes it stop on the syscall with PTRACE_SYSCALL instead, which works
# everywhere. Podman does not pass its environment on to runc, so a wrapper sets it for every caller.
chroot "$build" dpkg-divert --quiet --local --rename --divert /usr/sbin/criu.real --add /usr/sbin/criu
cat >"$build/usr/sbin/criu" <<'EOF'
#!/bin/sh
# ckpt end-to-end root: no hardware breakpoints (see test/e2e/root.sh). The real CRIU is criu.real.
: "${CRIU_FAULT:=130}"
export CRIU_FAULT
exec /usr/sbin/criu.real "$@"
EOF
chmod 755 "$build/usr/sbin/criu"

# --- the base image -------------------------------------------------------------------------------
log "building $BASE_IMAGE"
CKPT_E2E_ROOT="$build" "$here/enter.sh" -- /bin/bash -euc '
  printf "Welcome to the ckpt end-to-end base image.\n" > /tmp/motd
  c=$(buildah from scratch)
  buildah copy --quiet "$c" /bin/busybox /bin/busybox
  buildah copy --quiet "$c" /tmp/motd /etc/motd
  buildah config --cmd "[\"/bin/busybox\", \"sh\"]" --env PATH=/bin "$c"
  buildah commit --quiet "$c" '"$BASE_IMAGE"' >/dev/null
  buildah rm "$c" >/dev/null
  podman image exists '"$BASE_IMAGE"'
  criu --version | head -n1; podman --version; runc --version | head -n1
' >&2 || die "building $BASE_IMAGE inside $build failed"

{
  echo "key=$key"; echo "suite=$SUITE"; echo "mirror=$mirror"; echo "built=$(date -u +%FT%TZ)"
  echo "seconds=$(( $(date +%s) - started ))"; packages
} >"$build/.ckpt-e2e-complete"
mv -T "$build" "$final"
trap - EXIT
log "root ready in $(( $(date +%s) - started )) s: $final"
prune_others
echo "$final"
