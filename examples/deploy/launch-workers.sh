#!/usr/bin/env bash
# Launch, check or stop actorscope agent servers on many machines over ssh.
#
#   AS_SERVER_TOKEN=$(openssl rand -hex 32) examples/deploy/launch-workers.sh start hosts.txt
#   examples/deploy/launch-workers.sh status hosts.txt
#   examples/deploy/launch-workers.sh stop hosts.txt
#
# hosts.txt: one worker per line, `SSH_TARGET [PORT [ADDRESS]]`; blank lines and # comments
# are ignored. SSH_TARGET is what ssh dials (user@host or an ~/.ssh/config alias); ADDRESS is
# the address clients and the other workers use to reach the server (its --host), by default
# the host part of SSH_TARGET; PORT defaults to $PORT (12310).
#
#   # workers
#   ubuntu@10.0.0.2
#   ubuntu@10.0.0.3   12310
#   gpu-box-4         12311  10.0.0.4
#
# `start` copies the compiled server ($BIN, from `bun run build`) and the agent directory
# ($AGENT_DIR, optional) to $REMOTE_DIR on each machine, stores the token there in a file only
# its user can read (never on a command line: --token-file), starts `as-server start --host
# ADDRESS --port PORT` under nohup, waits for its listening line, and writes the servers list
# ($OUT, one ADDRESS:PORT a line) that `ServerGroup.fromFile()` reads. Machines are handled in
# parallel. A machine whose server is already running is left as it is (run `stop` first to
# change its binary, agents or token), and a binary identical to the one there (sha256) is not
# copied again. `stop` waits until each server has exited (up to WAIT_S).
#
# Environment:
#   AS_SERVER_TOKEN  shared secret of every server (required by `start`); the servers also
#                    present it to each other (AS_CLIENT_TOKEN), so references work across them;
#                    each server may dial only the fleet's other servers (--allow-peers)
#   BIN              compiled server to copy (default dist/as-server)
#   AGENT_DIR        local directory of agent classes to copy (served with --agent-dir)
#   REMOTE_DIR       directory on the workers (default actorscope, relative to the remote home;
#                    %h is replaced by ADDRESS)
#   PORT             default port (12310)
#   OUT              servers list to write (default servers.txt)
#   TLS_DIR          optional: serve over TLS. Holds ADDRESS.crt and ADDRESS.key for each worker,
#                    and ca.crt: copied over, passed as --tls-cert/--tls-key, ca.crt as
#                    --tls-client-ca when REQUIRE_CLIENT_CERT=1 (each worker then presents its
#                    own certificate to the others), and given to the workers as AS_TLS_CA so
#                    that they verify each other
#   EXTRA_ARGS       more `as-server start` flags, e.g. "--capacity 64 --max-pool-size 65536"
#   SSH, SCP         commands used to reach the workers (default ssh, scp; options may follow,
#                    e.g. SSH="ssh -i key.pem -o BatchMode=yes")
#   WAIT_S           how long to wait for a server to listen (default 30)
set -euo pipefail

usage() {
  sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

cmd=${1:-}
hosts_file=${2:-}
case "$cmd" in start | stop | status) ;; *) usage ;; esac
[ -n "$hosts_file" ] && [ -r "$hosts_file" ] || { echo "launch-workers: cannot read hosts file '${hosts_file}'" >&2; exit 2; }

BIN=${BIN:-dist/as-server}
REMOTE_DIR=${REMOTE_DIR:-actorscope}
PORT=${PORT:-12310}
OUT=${OUT:-servers.txt}
AGENT_DIR=${AGENT_DIR:-}
TLS_DIR=${TLS_DIR:-}
REQUIRE_CLIENT_CERT=${REQUIRE_CLIENT_CERT:-0}
EXTRA_ARGS=${EXTRA_ARGS:-}
SSH=${SSH:-ssh}
SCP=${SCP:-scp}
WAIT_S=${WAIT_S:-30}

# Word-split on purpose: SSH/SCP may carry options.
# shellcheck disable=SC2086
remote() { $SSH "$1" "$2"; }
# shellcheck disable=SC2086
copy() { $SCP "$1" "$2:$3"; }

# Single-quote a value for the remote shell.
q() { printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"; }

# One line of the hosts file → "target port address".
workers() {
  sed -e 's/#.*//' "$hosts_file" | awk 'NF { print }' | while read -r target port address _; do
    port=${port:-$PORT}
    if [ -z "${address:-}" ]; then
      address=${target#*@}
      address=${address%%:*}
    fi
    case "$port" in '' | *[!0-9]*) echo "launch-workers: bad port '$port' for $target" >&2; exit 2 ;; esac
    echo "$target $port $address"
  done
}

dir_of() { printf '%s' "${REMOTE_DIR//%h/$1}"; }

# ADDRESS:PORT, with brackets for IPv6.
endpoint() { case "$1" in *:*) echo "[$1]:$2" ;; *) echo "$1:$2" ;; esac; }

# The pid of the server running in a worker's directory, or nothing.
running_pid() {
  remote "$1" "cd $(q "$2") 2>/dev/null && [ -f as-server.pid ] && kill -0 \$(cat as-server.pid) 2>/dev/null && cat as-server.pid" || true
}

start_one() {
  local target=$1 port=$2 address=$3 dir flags env pid sum
  dir=$(dir_of "$address")
  # Checked before anything is copied: a running binary cannot be overwritten ("Text file busy").
  pid=$(running_pid "$target" "$dir")
  if [ -n "$pid" ]; then
    echo "launch-workers: $(endpoint "$address" "$port") already running (pid $pid) on $target: left as it is (stop it first to change it)" >&2
    return 0
  fi
  remote "$target" "mkdir -p $(q "$dir") && chmod 700 $(q "$dir")"
  sum=$(sha256sum "$BIN" | cut -d' ' -f1)
  if [ "$(remote "$target" "cd $(q "$dir") && sha256sum as-server 2>/dev/null | cut -d' ' -f1" || true)" = "$sum" ]; then
    echo "launch-workers: $target already has this binary (sha256 ${sum:0:12}…): not copied" >&2
  else
    copy "$BIN" "$target" "$dir/as-server"
  fi
  remote "$target" "chmod 755 $(q "$dir/as-server")"
  # The fleet's servers may dial each other (references name them), and nothing else.
  flags="--host $(q "$address") --port $port --token-file token --allow-peers $(q "$PEERS")"
  if [ -n "$AGENT_DIR" ]; then
    tar -C "$AGENT_DIR" -cf - . | remote "$target" "rm -rf $(q "$dir/agents") && mkdir -p $(q "$dir/agents") && tar -xf - -C $(q "$dir/agents")"
    flags="$flags --agent-dir agents"
  fi
  # The token travels on stdin into a file only this user can read.
  printf '%s' "$AS_SERVER_TOKEN" | remote "$target" "umask 077 && cat > $(q "$dir/token")"
  env='AS_CLIENT_TOKEN=$(cat token)'
  if [ -n "$TLS_DIR" ]; then
    remote "$target" "mkdir -p $(q "$dir/tls") && chmod 700 $(q "$dir/tls")"
    copy "$TLS_DIR/$address.crt" "$target" "$dir/tls/server.crt"
    copy "$TLS_DIR/$address.key" "$target" "$dir/tls/server.key"
    copy "$TLS_DIR/ca.crt" "$target" "$dir/tls/ca.crt"
    flags="$flags --tls-cert tls/server.crt --tls-key tls/server.key"
    env="$env AS_TLS_CA=tls/ca.crt"
    if [ "$REQUIRE_CLIENT_CERT" = 1 ]; then
      # Mutual TLS: each server also shows its own certificate when it calls the others.
      flags="$flags --tls-client-ca tls/ca.crt"
      env="$env AS_TLS_CERT=tls/server.crt AS_TLS_KEY=tls/server.key"
    fi
  fi
  [ -n "$EXTRA_ARGS" ] && flags="$flags $EXTRA_ARGS"
  # Refuse to start a second server over a running one; nohup keeps it alive after ssh leaves.
  remote "$target" "cd $(q "$dir") && if [ -f as-server.pid ] && kill -0 \$(cat as-server.pid) 2>/dev/null; then echo 'already running (pid '\$(cat as-server.pid)')' >&2; exit 1; fi
    $env nohup ./as-server start $flags > as-server.log 2>&1 < /dev/null &
    echo \$! > as-server.pid"
  local waited=0
  until remote "$target" "grep -q 'listening on' $(q "$dir/as-server.log")" 2>/dev/null; do
    if ! remote "$target" "kill -0 \$(cat $(q "$dir/as-server.pid")) 2>/dev/null"; then
      echo "launch-workers: the server on $target exited:" >&2
      remote "$target" "tail -n 20 $(q "$dir/as-server.log")" >&2 || true
      return 1
    fi
    waited=$((waited + 1))
    if [ "$waited" -gt $((WAIT_S * 5)) ]; then
      echo "launch-workers: the server on $target did not listen within ${WAIT_S} s" >&2
      return 1
    fi
    sleep 0.2
  done
  echo "launch-workers: $(endpoint "$address" "$port") up ($target)" >&2
}

stop_one() {
  local target=$1 dir
  dir=$(dir_of "$3")
  # SIGTERM: the server drains calls in flight, then exits; wait for that (bounded), so that a
  # `start` right after finds no running binary.
  remote "$target" "cd $(q "$dir") 2>/dev/null || exit 0
    [ -f as-server.pid ] || exit 0
    pid=\$(cat as-server.pid); kill \$pid 2>/dev/null || true
    i=0; while kill -0 \$pid 2>/dev/null && [ \$i -lt $((WAIT_S * 10)) ]; do sleep 0.1; i=\$((i + 1)); done
    if kill -0 \$pid 2>/dev/null; then echo 'still draining after ${WAIT_S} s' >&2; exit 1; fi
    rm -f as-server.pid" || { echo "launch-workers: $(endpoint "$3" "$2") did not stop ($target)" >&2; return 1; }
  echo "launch-workers: stopped $(endpoint "$3" "$2") ($target)" >&2
}

status_one() {
  local target=$1 port=$2 address=$3 dir
  dir=$(dir_of "$address")
  remote "$target" "cd $(q "$dir") && ./as-server status --host $(q "$address") --port $port --token-file token"
}

mapfile -t lines < <(workers)
[ "${#lines[@]}" -gt 0 ] || { echo "launch-workers: no workers in $hosts_file" >&2; exit 2; }
# Every worker's address:port, for --allow-peers.
PEERS=$(for l in "${lines[@]}"; do read -r _ p a <<< "$l"; endpoint "$a" "$p"; done | paste -sd, -)

case "$cmd" in
  start)
    : "${AS_SERVER_TOKEN:?set AS_SERVER_TOKEN to the shared secret, e.g. export AS_SERVER_TOKEN=\$(openssl rand -hex 32)}"
    [ -f "$BIN" ] || { echo "launch-workers: no server binary at $BIN (run \`bun run build\`)" >&2; exit 2; }
    logs=$(mktemp -d)
    trap 'rm -rf "$logs"' EXIT
    pids=()
    for i in "${!lines[@]}"; do
      # shellcheck disable=SC2086
      (start_one ${lines[$i]}) 2> "$logs/$i" &
      pids+=($!)
    done
    failed=0
    for i in "${!pids[@]}"; do
      wait "${pids[$i]}" || failed=1
      cat "$logs/$i" >&2
    done
    [ "$failed" = 0 ] || { echo "launch-workers: some workers did not start (see above); the others are running" >&2; exit 1; }
    : > "$OUT"
    for l in "${lines[@]}"; do
      # shellcheck disable=SC2086
      set -- $l
      endpoint "$3" "$2" >> "$OUT"
    done
    echo "launch-workers: ${#lines[@]} servers listed in $OUT" >&2
    ;;
  stop)
    rc=0
    for l in "${lines[@]}"; do
      # shellcheck disable=SC2086
      stop_one $l || rc=1
    done
    exit "$rc"
    ;;
  status)
    rc=0
    for l in "${lines[@]}"; do
      # shellcheck disable=SC2086
      status_one $l || rc=1
    done
    exit "$rc"
    ;;
esac
