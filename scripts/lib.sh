# Shared by the bench scripts (sourced): a free port, and a server started in the background
# that is known to be the one this script started before anything talks to it.

# A port that was free a moment ago (the kernel's choice).
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_for_own_server PID URL LOG: waits until the server with PID answers at URL to this
# script's VELLUM_API_KEY. Another issuer that happens to listen on the port answers 401 (or
# the process has died because the port was taken): then the log is shown and the script stops.
wait_for_own_server() {
  local pid=$1 url=$2 log=$3 status
  for _ in $(seq 300); do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "the server did not start (it exited); its log:" >&2
      cat "$log" >&2
      exit 1
    fi
    status=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $VELLUM_API_KEY" \
      "$url/api/v1/keys" 2>/dev/null || true)
    case $status in
      200) return 0 ;;
      401)
        echo "something else answers at $url (401 to this run's API key); stopping" >&2
        exit 1
        ;;
    esac
    sleep 0.1
  done
  echo "the server did not answer at $url; its log:" >&2
  cat "$log" >&2
  exit 1
}

# CPU time in clock ticks, from /proc/PID/stat: utime + stime of each PID given (fields 14, 15).
ticks() {
  local pid total=0
  for pid in "$@"; do
    total=$((total + $(awk '{sub(/.*\) /, ""); print $12 + $13}' "/proc/$pid/stat" 2>/dev/null || echo 0)))
  done
  echo "$total"
}

# option NAME DEFAULT ARGS...: the value of --NAME among ARGS (DEFAULT when absent), e.g. the
# flows bench's --flows and --warmup.
option() {
  local name=$1 value=$2
  shift 2
  while [ $# -gt 0 ]; do
    case $1 in
      --$name) value=${2:-}; shift ;;
      --$name=*) value=${1#*=} ;;
    esac
    shift
  done
  echo "$value"
}
