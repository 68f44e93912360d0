# Helpers shared by the end-to-end scripts (sourced, not run).
# check DESCRIPTION COMMAND...: runs COMMAND, prints ok/FAIL, counts failures.
# wait_for SECONDS COMMAND...: polls until COMMAND succeeds; 1 when time runs out.
# free_port: a TCP port on loopback that is free now.
failures=${failures:-0}
check() {
  local what=$1; shift
  if "$@"; then echo "ok   - $what"; else echo "FAIL - $what"; failures=$((failures + 1)); fi
}
wait_for() {
  local deadline=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -ge $deadline ] && return 1
    sleep 0.1
  done
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
