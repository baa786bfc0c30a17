#!/bin/bash
# Chassis control hook for ipmi_sim (from /work/shared/ipmi-lab/chassis.sh). "Power" == a managed process (the "node").
# power on  -> start NODE_CMD in background, record its PID
# power off -> SIGKILL the recorded PID   (reset -> SIGKILL + start, soft -> SIGTERM)
# get power -> 1 if recorded PID alive, else 0
# Run directory: next to this script (the test copies it into its temp dir).
RUN=$(cd "$(dirname "$0")" && pwd)/run
PIDF=$RUN/node.pid
LOG=$RUN/chassis.log
NODE_CMD="${NODE_CMD:-sleep 100000}"
echo "$(date +%T.%N) $*" >> $LOG

# alive = pid file exists, process exists and is not a zombie (PID 1 here may reap late)
alive() {
    [ -f $PIDF ] || return 1
    st=$(awk '{print $3}' /proc/"$(cat $PIDF)"/stat 2>/dev/null)
    [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}

# Start the "node" fully detached: new session, stdio to /dev/null and all
# other inherited fds closed (ipmi_sim's UDP socket is NOT close-on-exec, so
# without this the node would keep port 623 bound after ipmi_sim exits).
start_node() {
    (
        for fd in /proc/$BASHPID/fd/*; do
            fd=${fd##*/}
            [ "$fd" -gt 2 ] 2>/dev/null && eval "exec $fd>&-"
        done
        exec setsid $NODE_CMD </dev/null >/dev/null 2>&1
    ) &
    echo $! > $PIDF
}

op=$1; shift
case "$op" in
get)
    for p in "$@"; do
        case $p in
        power) if alive; then echo "power:1"; else echo "power:0"; fi ;;
        boot)  echo "boot:default" ;;
        *)     echo "$p:0" ;;
        esac
    done
    ;;
set)
    while [ $# -gt 0 ]; do
        p=$1; v=$2; shift 2
        case $p in
        power)
            if [ "$v" = "1" ]; then
                if ! alive; then
                    start_node
                fi
            else
                if alive; then kill -9 "$(cat $PIDF)"; fi
                rm -f $PIDF
            fi
            ;;
        reset)
            if alive; then kill -9 "$(cat $PIDF)"; fi
            start_node
            ;;
        shutdown)
            # "chassis power soft" (ACPI soft-off): graceful SIGTERM
            if alive; then kill -TERM "$(cat $PIDF)"; fi
            ;;
        *) : ;;   # boot, identify: accepted and ignored
        esac
    done
    ;;
check) exit 0 ;;
esac
exit 0
