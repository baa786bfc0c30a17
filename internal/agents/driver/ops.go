package driver

import (
	"time"

	"github.com/paceline/paceline/internal/agents"
	"github.com/paceline/paceline/internal/agents/ocf"
	"github.com/paceline/paceline/internal/spec"
)

// Op is one operation on an instance, with everything resolved: the
// action, its timeout and the onFail that applies when it fails.
type Op struct {
	Action   agents.Action
	Timeout  time.Duration
	Interval time.Duration // monitor: the interval (0: a probe or one-shot check)
	Depth    int           // monitor: OCF_CHECK_LEVEL
	Role     string        // monitor: spec.RolePromoted, spec.RoleUnpromoted or "" (any)
	OnFail   string        // the onFail of this operation
	Notify   *agents.Notification
}

// DefaultMonitorInterval is the interval of the recurring monitor of a
// script-class resource whose spec sets no monitor operation and whose
// meta-data advertises none (pcs would copy the advertised one into the
// CIB; most agents advertise 10s).
const DefaultMonitorInterval = 10 * time.Second

// VIPStopTimeout is the stop timeout of a vip resource whose spec sets
// none: the stop is one netlink request (microseconds to a millisecond).
// The leader does not wait for it when it moves the address (the lease
// guard removes it, FenceWait), but the self-fence runs it and a late
// stop must not hold the instance.
const VIPStopTimeout = 200 * time.Millisecond

// processStopSlack is added to a process's stopTimeout (SIGTERM → SIGKILL)
// to bound the whole stop when no stop operation sets a timeout.
const processStopSlack = 5 * time.Second

// mdRole maps a spec role to the meta-data's role name.
func mdRole(role string) string {
	switch role {
	case spec.RolePromoted:
		return "Promoted"
	case spec.RoleUnpromoted:
		return "Unpromoted"
	}
	return ""
}

// specOp finds the spec operation for action (monitors: with role and, if
// interval > 0, that interval; a role-less monitor matches any role).
func specOp(res *spec.Resource, action agents.Action, role string, interval time.Duration) (spec.Operation, bool) {
	var fallback *spec.Operation
	for i := range res.Operations {
		o := &res.Operations[i]
		if o.Name != string(action) {
			continue
		}
		if action != agents.Monitor {
			return *o, true
		}
		if interval > 0 && o.Interval.D() != interval {
			continue
		}
		if o.Role == role {
			return *o, true
		}
		if o.Role == "" && fallback == nil {
			fallback = o
		}
	}
	if fallback != nil {
		return *fallback, true
	}
	return spec.Operation{}, false
}

// Resolve returns the operation for action on res: its timeout from the
// spec's operation, else (process class) the process parameters, else the
// agent's advertised timeout (md, may be nil), else spec.DefaultOpTimeout
// (a vip stop: VIPStopTimeout, before the meta-data); its onFail from the
// spec's operation, else block for stop, else the resource's onFail, else
// restart. For a monitor, role and interval select
// the operation (interval 0: a probe, which takes a monitor's timeout).
func Resolve(res *spec.Resource, action agents.Action, role string, interval time.Duration, md *ocf.Metadata) Op {
	op := Op{Action: action, Interval: interval, Role: role}
	so, found := specOp(res, action, role, interval)
	if !found && action == agents.Monitor && interval == 0 {
		so, found = specOp(res, action, role, 0) // a probe: any monitor of the role
	}
	if found {
		op.Timeout = so.Timeout.D()
		op.OnFail = so.OnFail
		if action == agents.Monitor {
			op.Depth = so.Depth
		}
	}
	if op.Timeout <= 0 && res.Class == spec.ClassProcess {
		switch action {
		case agents.Start:
			op.Timeout = res.Params.StartTimeout.D()
		case agents.Stop:
			if d := res.Params.StopTimeout.D(); d > 0 {
				op.Timeout = d + processStopSlack
			}
		}
	}
	if op.Timeout <= 0 && action == agents.Stop && res.Info().Kind == spec.KindVIP {
		op.Timeout = VIPStopTimeout
	}
	if op.Timeout <= 0 && md != nil {
		if d, ok := md.Timeout(string(action), mdRole(role), interval); ok {
			op.Timeout = d
		}
	}
	if op.Timeout <= 0 {
		op.Timeout = spec.DefaultOpTimeout.D()
	}
	if op.OnFail == "" {
		switch {
		case action == agents.Stop:
			op.OnFail = spec.OnFailBlock
		case res.OnFail != "":
			op.OnFail = res.OnFail
		default:
			op.OnFail = spec.OnFailRestart
		}
	}
	return op
}

// Monitor returns the recurring monitor for an instance in role
// (spec.RolePromoted, or "" for started/unpromoted): the spec's monitor
// operation for that role, else its role-less monitor, else the monitor
// the meta-data advertises for the role, else DefaultMonitorInterval.
// The process class has no recurring monitor (ok false): its driver
// reports exits and health-check failures as they happen.
func Monitor(res *spec.Resource, role string, md *ocf.Metadata) (Op, bool) {
	if res.Class == spec.ClassProcess {
		return Op{}, false
	}
	if role == "" && res.Mode == spec.ModePromotable {
		role = spec.RoleUnpromoted
	}
	interval := time.Duration(0)
	if so, ok := specOp(res, agents.Monitor, role, 0); ok && so.Interval > 0 {
		interval = so.Interval.D()
	}
	if interval == 0 && md != nil {
		want := mdRole(role)
		for _, a := range md.Actions {
			if a.Name != string(agents.Monitor) || a.Interval <= 0 {
				continue
			}
			if a.Role == want {
				interval = a.Interval
				break
			}
			if a.Role == "" && interval == 0 {
				interval = a.Interval
			}
		}
	}
	if interval == 0 {
		interval = DefaultMonitorInterval
	}
	return Resolve(res, agents.Monitor, role, interval, md), true
}

// FenceWait bounds how long after its hold lease ran out a node may still
// be ending an instance of res (docs/safety.md, "Script classes" and
// "Lease guards"). It is 0 for the classes whose fence action a lease
// guard performs (internal/guard), independently of the agent: the
// process class (SIGKILL to the group) and the vip class (address
// removal) — both done within the lease margin of the holder's deadline,
// before the leader's expiry. A script class (ocf, lsb, systemd) runs its
// stop, and a promoted instance its demote and, if that fails, its stop —
// each bounded by the timeout the spec sets or spec.DefaultOpTimeout —
// never the agent's advertised timeout, which the leader does not know:
// the executor uses the same bounds when it self-fences, see FenceOp.
func FenceWait(res *spec.Resource) time.Duration {
	if Guarded(res) {
		return 0
	}
	d := FenceOp(res, agents.Stop).Timeout
	if res.Mode == spec.ModePromotable {
		d += FenceOp(res, agents.Demote).Timeout
	}
	return d
}

// Guarded reports whether every exclusive instance of res has a lease
// guard that performs its whole fence action on its own: the process
// class (SIGKILL to the group) and the vip class (always single: the
// address is removed).
func Guarded(res *spec.Resource) bool {
	k := res.Info().Kind
	return k == spec.ClassProcess || k == spec.KindVIP
}

// FenceOp is the stop or demote run when the lease runs out: its timeout
// comes from the spec or spec.DefaultOpTimeout only.
func FenceOp(res *spec.Resource, action agents.Action) Op {
	return Resolve(res, action, "", 0, nil)
}
