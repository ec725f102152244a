# Sourced, never run: starts long-running services for the tests without leaking descriptors.
#
# daemon LOG COMMAND...: starts COMMAND as a daemon with its output in LOG, in a session of its own,
# holding no file descriptor but its standard ones. `flock LOCK scripts/….sh up` hands the lock's
# descriptor to what it runs, and a daemon that inherited it would hold the lock for as long as it
# lives. Sets DAEMON_PID.
daemon() {
  local log=$1 fd
  shift
  (
    for fd in /proc/self/fd/*; do
      fd=${fd##*/}
      [ "$fd" -gt 2 ] 2>/dev/null && eval "exec $fd>&-"
    done
    exec setsid nohup "$@" >"$log" 2>&1 </dev/null
  ) 2>/dev/null &
  DAEMON_PID=$!
}
