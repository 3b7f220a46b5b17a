#!/bin/bash
# Run commands inside the end-to-end Debian 13 root (made by test/e2e/root.sh) the way
# ../shared/docs/REAL-RUNTIMES.md says CRIU needs it: a private mount namespace, the root
# bind-mounted onto itself, a fresh /proc, /sys and /dev rbind-mounted, tmpfs on /run and /tmp,
# pivot_root, the old root detached, every descriptor above 2 closed. The network namespace stays
# the host's, so a registry on 127.0.0.1 is reachable from both sides.
#
# One-shot (a new mount namespace per call; /run does not survive the call):
#   enter.sh [--root DIR] [--bind HOST:INSIDE]... -- CMD [ARG...]
# A session (one mount namespace kept alive by a holder process, so that Podman's /run state,
# running containers and CRIU-restored processes survive between calls):
#   enter.sh [--root DIR] [--bind HOST:INSIDE]... --start STATEFILE   # prints the holder pid
#   enter.sh --session STATEFILE -- CMD [ARG...]
#   enter.sh --stop STATEFILE       # kills the holder and whatever still runs in its namespace
# Only one session per root at a time: ROOT.lock is held while the holder lives, and ROOT.session
# records "HOLDER OWNER", OWNER being the process that started it ($CKPT_E2E_OWNER, else the
# caller's parent: the test runner). A session whose owner has died (a run killed half-way) is
# stale: the next --start stops it (its containers removed) and takes the root over. So when you
# start a session by hand from a script that exits, set CKPT_E2E_OWNER to a process that lives as
# long as you use the session.
# --root defaults to $CKPT_E2E_ROOT, else to the cached root of the current package list.
# Inside, the environment is clean: PATH, HOME=/root, LANG=C.UTF-8, PODMAN_IGNORE_CGROUPSV1_WARNING=1,
# plus every --env KEY=VALUE.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
self="$here/enter.sh"

die() { echo "enter.sh: $*" >&2; exit 2; }

inside_env=(PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8
  PODMAN_IGNORE_CGROUPSV1_WARNING=1 TERM=dumb)

# --- the part that runs in the new mount namespace, before and after pivot_root ---------------
setup_root() { # ROOT BINDS...
  local root=$1; shift
  mount --bind "$root" "$root"
  mount -t proc proc "$root/proc"
  mount --rbind /sys "$root/sys"
  mount --rbind /dev "$root/dev"
  mount -t tmpfs -o mode=0755 tmpfs "$root/run"
  mount -t tmpfs -o mode=1777 tmpfs "$root/tmp"
  local b host inside
  for b in "$@"; do
    host=${b%%:*}; inside=${b#*:}
    mkdir -p "$root$inside"
    mount --bind "$host" "$root$inside"
  done
  mkdir -p "$root/oldroot"
  cd "$root"
  pivot_root . oldroot
  cd /
}

close_fds() {
  local fd
  for fd in /proc/self/fd/*; do
    fd=${fd##*/}
    if [[ $fd =~ ^[0-9]+$ ]] && (( fd > 2 )); then eval "exec $fd>&-" 2>/dev/null || true; fi
  done
}

if [[ ${1:-} == --inner ]]; then # --inner ROOT NBINDS BINDS... -- CMD...
  shift; root=$1; n=$2; shift 2
  binds=("${@:1:n}"); shift "$n"; [[ $1 == -- ]] && shift
  setup_root "$root" "${binds[@]}"
  umount -l /oldroot
  close_fds
  exec "$@"
fi

if [[ ${1:-} == --inner-hold ]]; then # --inner-hold ROOT STATEFILE NBINDS BINDS...
  shift; root=$1; state=$2; n=$3; shift 3
  setup_root "$root" "$@"
  echo "$$" > "/oldroot$state.tmp"
  mv "/oldroot$state.tmp" "/oldroot$state"
  umount -l /oldroot
  close_fds
  exec sleep infinity
fi

# --- the command line ----------------------------------------------------------------------------
root=${CKPT_E2E_ROOT:-}
binds=()
envs=()
mode=oneshot
state=
while (($#)); do
  case $1 in
    --root) root=$2; shift 2 ;;
    --bind) [[ $2 == *:/* ]] || die "--bind wants HOST:/INSIDE, got '$2'"; binds+=("$2"); shift 2 ;;
    --env) envs+=("$2"); shift 2 ;;
    --start) mode=start; state=$2; shift 2 ;;
    --session) mode=session; state=$2; shift 2 ;;
    --stop) mode=stop; state=$2; shift 2 ;;
    --) shift; break ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) break ;;
  esac
done

[[ $(id -u) == 0 ]] || die "must run as root (it mounts and pivots)"

holder_alive() { # STATEFILE -> pid on stdout if the holder lives
  local pid
  [[ -s $1 ]] || return 1
  pid=$(<"$1")
  [[ $pid =~ ^[0-9]+$ && $(cat "/proc/$pid/comm" 2>/dev/null) == sleep ]] && echo "$pid"
}

# Stop a session: remove its containers (they live in namespaces of their own), kill the holder
# and whatever else still runs in the session's mount namespace (conmon, CRIU-restored processes).
stop_holder() { # PID
  local pid=$1 ns p
  ns=$(readlink "/proc/$pid/ns/mnt") || return 0
  timeout 120 nsenter -t "$pid" -m -r -w -- /usr/bin/env -i "${inside_env[@]}" /bin/bash -c \
    'podman rm --all --force --time 0 >/dev/null 2>&1' </dev/null >/dev/null 2>&1 || true
  kill "$pid" 2>/dev/null || true
  for p in /proc/[0-9]*; do
    p=${p#/proc/}
    [[ $p == "$$" ]] && continue
    if [[ $(readlink "/proc/$p/ns/mnt" 2>/dev/null) == "$ns" ]]; then kill -KILL "$p" 2>/dev/null || true; fi
  done
}

case $mode in
  session)
    pid=$(holder_alive "$state") || die "no live session in $state (start one with --start)"
    (($#)) || set -- /bin/bash
    # nsenter joins the holder's mount namespace with its root; the clean environment and the
    # descriptor closing happen inside, in the root's own bash.
    exec nsenter -t "$pid" -m -r -w -- /usr/bin/env -i "${inside_env[@]}" "${envs[@]}" /bin/bash -c '
      for fd in /proc/self/fd/*; do fd=${fd##*/}
        if [[ $fd =~ ^[0-9]+$ ]] && (( fd > 2 )); then eval "exec $fd>&-" 2>/dev/null || true; fi
      done
      cd /
      exec "$@"' enter "$@"
    ;;
  stop)
    if pid=$(holder_alive "$state"); then stop_holder "$pid"; fi
    rm -f "$state"
    exit 0
    ;;
esac

if [[ -z $root ]]; then
  root=$("$here/root.sh" --path) || die "no root given and the cached root is not built (run test/e2e/root.sh)"
fi
root=$(cd "$root" && pwd -P)
[[ -x $root/usr/bin/podman && -x $root/bin/bash ]] || die "$root is not an e2e root (no podman/bash in it)"
for b in "${binds[@]}"; do [[ -d ${b%%:*} ]] || die "bind source ${b%%:*} is not a directory"; done

case $mode in
  oneshot)
    (($#)) || set -- /bin/bash
    exec unshare -m --propagation private -- /bin/bash "$self" --inner "$root" "${#binds[@]}" "${binds[@]}" -- \
      /usr/bin/env -i "${inside_env[@]}" "${envs[@]}" "$@"
    ;;
  start)
    [[ $state == /* ]] || die "--start wants an absolute state file path"
    if pid=$(holder_alive "$state"); then echo "$pid"; exit 0; fi
    lock="$root.lock"
    info="$root.session"          # "HOLDER OWNER" of the session that holds the lock
    owner=${CKPT_E2E_OWNER:-$PPID}
    log="$state.log"
    for attempt in 1 2; do
      rm -f "$state" "$state.tmp"
      # flock holds the root's lock for as long as the holder lives; -E 75 says "busy".
      setsid flock -n -E 75 "$lock" unshare -m --propagation private -- \
        /bin/bash "$self" --inner-hold "$root" "$state" "${#binds[@]}" "${binds[@]}" \
        </dev/null >"$log" 2>&1 &
      starter=$!
      for _ in $(seq 1 100); do
        if pid=$(holder_alive "$state"); then echo "$pid $owner" >"$info"; echo "$pid"; exit 0; fi
        kill -0 "$starter" 2>/dev/null || break
        sleep 0.1
      done
      if kill -0 "$starter" 2>/dev/null; then die "the session did not start within 10 s: $(tr '\n' ' ' <"$log")"; fi
      rc=0; wait "$starter" || rc=$?
      ((rc == 75)) || die "the session did not start (exit $rc): $(tr '\n' ' ' <"$log")"
      # Busy. A session whose owner died (a run killed half-way) is stale: stop it and retry.
      oldholder=; oldowner=; [[ -r $info ]] && read -r oldholder oldowner _ <"$info" || true
      if ((attempt == 1)) && [[ ${oldowner:-} =~ ^[0-9]+$ ]] && ! kill -0 "$oldowner" 2>/dev/null &&
         [[ ${oldholder:-} =~ ^[0-9]+$ && $(cat "/proc/$oldholder/comm" 2>/dev/null) == sleep ]]; then
        echo "enter.sh: stopping a stale session of $root (holder $oldholder, its owner $oldowner is gone)" >&2
        stop_holder "$oldholder"
        for _ in $(seq 1 50); do flock -n "$lock" true && break; sleep 0.1; done
        continue
      fi
      die "another end-to-end session is using $root (holder ${oldholder:-?}, owner process ${oldowner:-?}); runs must not overlap"
    done
    ;;
esac
