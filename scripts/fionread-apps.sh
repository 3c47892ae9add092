#!/usr/bin/env bash
# Which real servers stall when FIONREAD does not count redirected bytes?
# Runs sockaccel (opted in with --fionread-hazard=accept) on a scratch cgroup,
# moves this shell into it, and drives real servers over accelerated loopback
# connections: a Node.js HTTP server, nginx (static file, and proxy_pass to
# Node with a request body), HAProxy (HTTP and TCP mode), a Java server that
# reads what InputStream.available() reports, and a reader that sizes its
# reads with FIONREAD. Each line: PASS/FAIL, what was seen, and the bytes
# sockaccel redirected meanwhile (0 would mean the test was not accelerated).
# First it starts the daemon without the opt-in and shows what it decides.
#
#   bash scripts/fionread-apps.sh [--object-dir=DIR]
#   bash scripts/kernel-vm.sh 6.1 -- bash -c "cd $PWD && bash scripts/fionread-apps.sh"
#
# Needs root, node, nginx, haproxy, java/javac, python3, curl. Everything it
# creates (cgroup, pins, processes, temp dir) is removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

OBJECT_DIR=$PWD/build/bpf
for arg in "$@"; do
  case $arg in
    --object-dir=*) OBJECT_DIR=${arg#*=} ;;
    *) echo "usage: $0 [--object-dir=DIR]" >&2; exit 64 ;;
  esac
done

BIG=$((1024 * 1024))        # HTTP bodies
SMALL=$((32 * 1024))        # the Java and FIONREAD readers
TIMEOUT=20                  # seconds before a test counts as stalled
PORT_NODE=18080 PORT_NGINX=18081 PORT_HAP_HTTP=18082 PORT_HAP_TCP=18083 PORT_JAVA=18084 PORT_FIONREAD=18085

CLI=(node "$PWD/dist/src/cli/main.js")
CG_ROOT=$(awk '{ for (i = 7; i <= NF; i++) if ($i == "-") { if ($(i + 1) == "cgroup2") { print $5; exit } break } }' /proc/self/mountinfo)
CG=$CG_ROOT/sa-fionread-apps-$$
PIN=/sys/fs/bpf/sa-fionread-apps-$$
W=$(mktemp -d /tmp/sa-fionread-apps.XXXXXX)
HOME_CG=$(sed -n 's/^0:://p' /proc/self/cgroup)
PIDS=()
DAEMON=

cleanup() {
  set +e
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null; done
  echo $$ > "$CG_ROOT$HOME_CG/cgroup.procs"
  if [[ -n $DAEMON ]]; then kill -TERM "$DAEMON" 2>/dev/null; wait "$DAEMON" 2>/dev/null; fi
  [[ -d $PIN ]] && "${CLI[@]}" purge --pin-root="$PIN" --force > /dev/null 2>&1
  rmdir "$CG" 2>/dev/null
  rm -rf "$W"
}
trap cleanup EXIT

# Waits up to $2 seconds for file $1 to contain $3.
wait_for_line() {
  local deadline=$((SECONDS + $2))
  until grep -q -- "$3" "$1" 2>/dev/null; do
    ((SECONDS < deadline)) || { echo "timed out waiting for '$3' in $1:" >&2; tail -5 "$1" >&2; return 1; }
    sleep 0.2
  done
}

redirected() { "${CLI[@]}" status --json --pin-root="$PIN" | python3 -c 'import json,sys; print(json.load(sys.stdin)["counters"]["bytes_redirected"])'; }

report() { # NAME VERDICT DETAIL BEFORE
  printf '%-4s %-44s %s (redirected %s bytes)\n' "$2" "$1" "$3" "$(($(redirected) - $4))"
}

mkdir "$CG"
echo "kernel $(uname -r)"

# 1. The default: what does `run` decide on this kernel?
"${CLI[@]}" run --cgroup-path="$CG" --pin-root="$PIN" --object-dir="$OBJECT_DIR" > "$W/refuse.log" 2>&1 &
DAEMON=$!
deadline=$((SECONDS + 300))
while kill -0 "$DAEMON" 2>/dev/null && ! grep -q '"msg":"ready"' "$W/refuse.log"; do
  ((SECONDS < deadline)) || break
  sleep 0.2
done
if kill -0 "$DAEMON" 2>/dev/null; then
  echo "default (fionreadHazard=refuse): started"
  kill -TERM "$DAEMON"; wait "$DAEMON" || true
else
  wait "$DAEMON" && code=0 || code=$?
  echo "default (fionreadHazard=refuse): exit $code"
  grep -v '^{' "$W/refuse.log" | sed 's/^/    /'
fi
DAEMON=

# 2. Opted in: accelerate, and see who stalls.
"${CLI[@]}" run --cgroup-path="$CG" --pin-root="$PIN" --object-dir="$OBJECT_DIR" --fionread-hazard=accept > "$W/daemon.log" 2>&1 &
DAEMON=$!
wait_for_line "$W/daemon.log" 300 '"msg":"ready"'
python3 -c 'import json, sys
for line in open(sys.argv[1]):
    if "FIONREAD" in line and line.startswith("{"):
        print("    " + json.loads(line)["msg"])' "$W/daemon.log"
echo $$ > "$CG/cgroup.procs"   # servers and clients from here on are in the scratch cgroup

mkdir -p "$W/www" "$W/tmp"
node -e "const b=Buffer.alloc($BIG);for(let i=0;i<b.length;i++)b[i]=(i*31+7)&255;require('fs').writeFileSync('$W/www/big',b)"
BIG_SHA=$(sha256sum < "$W/www/big" | cut -d' ' -f1)
head -c "$BIG" /dev/urandom > "$W/body"
BODY_ANSWER="$BIG $(sha256sum < "$W/body" | cut -d' ' -f1)"

cat > "$W/nginx.conf" <<EOF
user root; daemon off; worker_processes 1; pid $W/nginx.pid; error_log $W/nginx-error.log;
events {}
http {
  access_log off; client_max_body_size 16m;
  client_body_temp_path $W/tmp/body; proxy_temp_path $W/tmp/proxy; fastcgi_temp_path $W/tmp/fcgi;
  uwsgi_temp_path $W/tmp/uwsgi; scgi_temp_path $W/tmp/scgi;
  server {
    listen 127.0.0.1:$PORT_NGINX; root $W/www;
    location /echo { proxy_pass http://127.0.0.1:$PORT_NODE; }
  }
}
EOF
cat > "$W/haproxy.cfg" <<EOF
defaults
  timeout connect 5s
  timeout client 30s
  timeout server 30s
listen http
  mode http
  bind 127.0.0.1:$PORT_HAP_HTTP
  server node 127.0.0.1:$PORT_NODE
listen tcp
  mode tcp
  bind 127.0.0.1:$PORT_HAP_TCP
  server node 127.0.0.1:$PORT_NODE
EOF
JAVA_CLASSES=$W/java
mkdir -p "$JAVA_CLASSES"
javac -d "$JAVA_CLASSES" scripts/fionread-apps/Avail.java

start() { # LOG READY_PATTERN COMMAND...
  local log=$1 pattern=$2
  shift 2
  "$@" > "$log" 2>&1 &
  PIDS+=($!)
  [[ -z $pattern ]] || wait_for_line "$log" 300 "$pattern"
}
start "$W/node.log" listening node scripts/fionread-apps/backend.js "$PORT_NODE" "$BIG"
start "$W/nginx.log" '' nginx -e "$W/nginx-error.log" -c "$W/nginx.conf" -p "$W"
start "$W/haproxy.log" '' haproxy -db -f "$W/haproxy.cfg"
start "$W/java.log" listening java -cp "$JAVA_CLASSES" Avail "$PORT_JAVA" "$SMALL" "$((TIMEOUT * 1000))"
start "$W/fionread.log" listening python3 scripts/fionread-apps/fionread_server.py "$PORT_FIONREAD" "$SMALL" "$TIMEOUT"
for port in $PORT_NGINX $PORT_HAP_HTTP $PORT_HAP_TCP; do
  deadline=$((SECONDS + 300))
  until (exec 3<> "/dev/tcp/127.0.0.1/$port") 2>/dev/null; do ((SECONDS < deadline)) || exit 1; sleep 0.2; done
done

get() { # NAME URL
  local before out
  before=$(redirected)
  out=$(curl -sS --max-time "$TIMEOUT" "$2" 2>&1 | sha256sum | cut -d' ' -f1) || true
  if [[ $out == "$BIG_SHA" ]]; then report "$1" PASS "GET $BIG bytes, sha256 matches" "$before"
  else report "$1" FAIL "GET did not complete in ${TIMEOUT}s or differs" "$before"; fi
}
post() { # NAME URL
  local before out
  before=$(redirected)
  out=$(curl -sS --max-time "$TIMEOUT" --data-binary "@$W/body" -H 'content-type: application/octet-stream' "$2" 2>&1) || true
  if [[ $out == "$BODY_ANSWER" ]]; then report "$1" PASS "POST $BIG bytes, the backend saw them all" "$before"
  else report "$1" FAIL "POST: ${out:0:120}" "$before"; fi
}
raw() { # NAME PORT
  local before out
  before=$(redirected)
  out=$(python3 scripts/fionread-apps/client.py "$2" "$SMALL" "$((TIMEOUT + 5))")
  if [[ $out == OK* ]]; then report "$1" PASS "$out" "$before"; else report "$1" FAIL "$out" "$before"; fi
}

get 'Node.js http: GET' "http://127.0.0.1:$PORT_NODE/big"
post 'Node.js http: POST' "http://127.0.0.1:$PORT_NODE/echo"
get 'nginx static: GET' "http://127.0.0.1:$PORT_NGINX/big"
post 'nginx proxy_pass to Node.js: POST' "http://127.0.0.1:$PORT_NGINX/echo"
get 'HAProxy http to Node.js: GET' "http://127.0.0.1:$PORT_HAP_HTTP/big"
post 'HAProxy http to Node.js: POST' "http://127.0.0.1:$PORT_HAP_HTTP/echo"
get 'HAProxy tcp to Node.js: GET' "http://127.0.0.1:$PORT_HAP_TCP/big"
raw 'Java InputStream.available() reader' "$PORT_JAVA"
raw 'FIONREAD-sized reader (python3)' "$PORT_FIONREAD"
