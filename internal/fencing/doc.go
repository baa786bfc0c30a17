// Package fencing powers cluster nodes off (and on) through fence
// devices, so that a node's resources may safely start elsewhere.
//
// A Device is either a fence-agents script (AgentDevice: /usr/sbin/fence_*,
// driven by key=value lines on stdin, run in its own process group and
// killed with it at its timeout) or the built-in Redfish client
// (RedfishDevice). Secret parameters come from files read at every call
// and never appear in errors, logs, String, JSON or the history.
//
// A Fencer holds a validated Config: devices, and per node topology
// levels tried in order, all devices of a level required. Fence(ctx,
// node, action) runs off, reboot (off, then on) or on; an off is a
// success only once the device's status reports the node off. Each
// device attempt is bounded by a timeout (default 60 s) and retried
// (default 2 retries); the Result records every attempt. Confirm records
// an operator's manual acknowledgement; History returns the bounded
// record of both. See docs/fencing.md.
package fencing
