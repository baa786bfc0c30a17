package agent

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"strconv"
	"time"

	"github.com/paceline/paceline/api"
	"github.com/paceline/paceline/internal/spec"
	"github.com/paceline/paceline/internal/state"
)

// candidates lists API addresses to try for the leader, best first.
func (a *Agent) candidates() []string {
	var out []string
	seen := map[string]bool{}
	add := func(s string) {
		if s != "" && !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	a.mu.Lock()
	add(a.leaderAPI)
	a.mu.Unlock()
	if _, l := a.leader(); l != "" {
		add(l)
	}
	for _, m := range a.cons.Members() {
		if m.Meta.Role == "control" && m.Alive {
			add(m.Meta.API)
		}
	}
	for _, j := range a.cfg.Join {
		add(j)
	}
	if a.cfg.Role == "control" {
		add(a.apiAddr)
	}
	return out
}

func (a *Agent) setLeaderAPI(s string) {
	a.mu.Lock()
	if s != a.leaderAPI && a.leaderChanged != nil {
		close(a.leaderChanged)
		a.leaderChanged = nil
	}
	a.leaderAPI = s
	a.mu.Unlock()
}

// leaderAPIWatch returns the leader's API address and a channel closed
// when it changes.
func (a *Agent) leaderAPIWatch() (string, <-chan struct{}) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.leaderChanged == nil {
		a.leaderChanged = make(chan struct{})
	}
	return a.leaderAPI, a.leaderChanged
}

func (a *Agent) currentLeaderAPI() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.leaderAPI
}

func (a *Agent) renewRequest() api.Renew {
	a.observeInstances()
	r := api.Renew{Node: a.cfg.NodeName, Cluster: a.cfg.ClusterName, Role: a.cfg.Role, APIAddr: a.apiAddr, Labels: a.cfg.Labels,
		Applied: a.exec.Applied(), Active: a.exec.Active(), Leaving: a.leaving.Load(),
		LeaseMS: a.lp.L.Milliseconds(), MarginMS: a.lp.Margin.Milliseconds(),
		Incarnation: a.incarnation, Seq: a.renewSeq.Add(1), ProbesDone: a.exec.ProbesDone(),
		Attributes: a.exec.NodeAttributes(), Ranks: a.ranks.current(), WatchdogMS: a.watchdogMS}
	if a.cfg.Role == "control" {
		r.RaftAddr = net.JoinHostPort(a.adv, strconv.Itoa(a.cfg.Ports.Raft))
	}
	return r
}

// renewOnce sends one renewal to addr and applies the answer to the lease.
func (a *Agent) renewOnce(ctx context.Context, addr string, req api.Renew, timeout time.Duration) (api.RenewAck, error) {
	var ack api.RenewAck
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	sent := time.Now()
	err := a.peerClient(addr).Do(cctx, "POST", "/v1/internal/renew", req, &ack)
	if err != nil {
		a.metrics.Renewals.WithLabelValues("error").Inc()
		return ack, err
	}
	if !ack.OK {
		a.metrics.Renewals.WithLabelValues("refused").Inc()
	}
	if ack.OK {
		a.metrics.Renewals.WithLabelValues("ok").Inc()
		a.metrics.RenewLatency.Observe(time.Since(sent).Seconds())
		wasValid := a.holder.Valid(time.Now())
		if !wasValid {
			// The end of a lease gap: raise the index exclusive starts
			// wait for *before* the lease becomes valid. In the other
			// order an instance could start (or restart in place) from
			// assignments older than a reassignment made while this node
			// was cut off (I4; seen once as an overlap in
			// TestMinorityPartitionHolder).
			a.exec.LeaseRegained(ack.Index)
		}
		a.exec.LeaseRenewed(a.holder.Acked(sent)) // the lease guards follow the deadline
		a.setLeaderAPI(addr)
		if !wasValid {
			a.exec.Reconcile() // the lease is valid now: waiting instances may act
		}
		a.readyOnce.Do(func() { close(a.ready) })
	}
	return ack, nil
}

// renewLoop keeps the hold lease: a renewal every L/4 (and early when the
// set of running instances changes, at most every 10 ms).
func (a *Agent) renewLoop(ctx context.Context) {
	// The lease guards get no deadline while the policy keeps exclusive
	// resources without a lease (freeze/ignore: no self-fence).
	a.exec.KeepWithoutLease(a.keepsWithoutQuorum)
	interval := a.lp.RenewInterval()
	// A renewal acknowledged late still counts from when it was sent, so
	// each attempt may take up to half the lease; failures back off with
	// jitter so that many nodes retrying do not swamp a struggling leader.
	timeout := a.lp.L / 2
	fails := 0
	lastErrLog := time.Time{}
	for {
		start := time.Now()
		req := a.renewRequest()
		ok := false
		var lastErr error
		for _, addr := range a.candidates() {
			ack, err := a.renewOnce(ctx, addr, req, timeout)
			if err != nil {
				lastErr = err
				continue
			}
			if ack.OK {
				ok = true
				break
			}
			if ack.Reason != "" && ack.Reason != "not leading" {
				lastErr = errors.New(ack.Reason)
			}
			if ack.LeaderAPI != "" && ack.LeaderAPI != addr {
				if ack2, err := a.renewOnce(ctx, ack.LeaderAPI, req, timeout); err == nil && ack2.OK {
					ok = true
					break
				}
			}
			if ctx.Err() != nil || time.Since(start) > interval {
				break
			}
		}
		if !ok && lastErr != nil && time.Since(lastErrLog) > 5*time.Second {
			lastErrLog = time.Now()
			a.log.Warn("lease renewal failed", "err", lastErr, "valid", a.holder.Valid(time.Now()))
		}
		wait := interval - time.Since(start)
		if ok {
			fails = 0
		} else {
			fails++
			wait = retryDelay(fails, interval)
		}
		if wait < 0 {
			wait = 0
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		case <-a.exec.Changed():
			select {
			case <-ctx.Done():
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
}

// watchLoop long-polls the leader for this node's assignments. After a
// lease gap it fetches at once (exclusive instances wait for fresh ones).
func (a *Agent) watchLoop(ctx context.Context) {
	for ctx.Err() == nil {
		// A long poll to a leader that has died hangs until its timeout
		// (no RST from a dead host): abandon it as soon as the renewals
		// find another leader.
		addr, changed := a.leaderAPIWatch()
		if addr == "" {
			select {
			case <-ctx.Done():
				return
			case <-time.After(20 * time.Millisecond):
			}
			continue
		}
		wait := "10s"
		if a.exec.Behind() {
			wait = "0s"
		}
		var as api.Assignments
		cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		stop := make(chan struct{})
		go func() {
			select {
			case <-a.exec.NeedFresh():
				cancel()
			case <-changed:
				cancel()
			case <-stop:
			}
		}()
		p := "/v1/internal/assignments?node=" + a.cfg.NodeName + "&after=" + strconv.FormatUint(a.exec.Applied(), 10) + "&wait=" + wait
		err := a.peerClient(addr).Do(cctx, "GET", p, nil, &as)
		close(stop)
		cancel()
		if err != nil {
			var ae *api.Error
			if errors.As(err, &ae) && ae.Leader != "" {
				a.setLeaderAPI(ae.Leader)
			}
			if ctx.Err() == nil && !errors.Is(err, context.Canceled) {
				select {
				case <-ctx.Done():
					return
				case <-time.After(20 * time.Millisecond):
				}
			}
			continue
		}
		a.exec.RecheckGuards() // the policy may have changed with the spec
		a.exec.Update(as)
	}
}

// fenceLoop kills exclusive instances the moment the lease runs out.
func (a *Agent) fenceLoop(ctx context.Context) {
	// Sleep until the lease deadline (or a short poll while nothing
	// exclusive runs): an idle node must not wake hundreds of times a
	// second, yet a holder must act within milliseconds of its deadline.
	timer := time.NewTimer(0)
	defer timer.Stop()
	kept := false // a freeze/ignore policy kept resources running since the lease ran out
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		now := time.Now()
		valid := a.holder.Valid(now)
		a.metrics.LeaseValid.Set(map[bool]float64{true: 1, false: 0}[valid])
		if valid {
			kept = false
		}
		if !valid && a.exec.HasExclusive() && a.keepsWithoutQuorum() {
			if !kept {
				kept = true
				a.log.Warn("hold lease expired: noQuorumPolicy keeps exclusive resources running; the rest of the cluster takes them over only after fencing this node",
					"policy", a.noQuorumPolicy(), "deadline", a.holder.Deadline().Format(time.RFC3339Nano))
			}
		} else if !valid && a.exec.HasExclusive() {
			killed := a.exec.SelfFence()
			if len(killed) > 0 {
				a.metrics.SelfFences.Inc()
				a.log.Warn("hold lease expired: self-fenced exclusive resources", "killed", killed, "deadline", a.holder.Deadline().Format(time.RFC3339Nano))
			}
		}
		next := 100 * time.Millisecond // nothing exclusive starts without a valid lease, which lasts far longer; poll lightly
		if valid {
			next = time.Until(a.holder.Deadline())
			if next < time.Millisecond {
				next = time.Millisecond
			}
		}
		timer.Reset(next)
	}
}

func (a *Agent) queueFailure(f api.Failure) {
	select {
	case a.failures <- f:
	default:
		a.log.Warn("failure report queue full; dropping", "resource", f.Resource)
	}
}

// failureLoop delivers failure reports to the leader, retrying.
func (a *Agent) failureLoop(ctx context.Context) {
	for {
		var f api.Failure
		select {
		case <-ctx.Done():
			return
		case f = <-a.failures:
		}
		for attempt := 0; attempt < 50 && ctx.Err() == nil; attempt++ {
			addr := a.currentLeaderAPI()
			if addr != "" {
				cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				err := a.peerClient(addr).Do(cctx, "POST", "/v1/internal/failure", f, nil)
				cancel()
				if err == nil {
					break
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
}

// sendLeaving tells the leader this node runs nothing anymore, retrying
// for up to 2 s (a new leader acknowledges only once its coordinator runs).
func (a *Agent) sendLeaving() {
	a.leaving.Store(true)
	req := a.renewRequest()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for ctx.Err() == nil {
		for _, addr := range a.candidates() {
			var ack api.RenewAck
			if err := a.peerClient(addr).Do(ctx, "POST", "/v1/internal/renew", req, &ack); err == nil && ack.OK {
				return
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// retryDelay is the pause after the n-th failed renewal in a row: 20 ms
// doubling up to the renewal interval, with up to 50% random jitter.
func retryDelay(n int, interval time.Duration) time.Duration {
	d := 20 * time.Millisecond
	for i := 1; i < n && d < interval; i++ {
		d *= 2
	}
	if d > interval {
		d = interval
	}
	return d/2 + time.Duration(rand.Int64N(int64(d/2)+1))
}

// observeInstances updates the instance gauge from the executor.
func (a *Agent) observeInstances() {
	counts := map[string]float64{"starting": 0, "running": 0, "stopping": 0, "failed": 0}
	for _, i := range a.exec.Active() {
		counts[i.State]++
	}
	for st, n := range counts {
		a.metrics.Instances.WithLabelValues(st).Set(n)
	}
}

// noQuorumPolicy is the spec's cluster.noQuorumPolicy as this node last
// applied it ("stop" when unset).
func (a *Agent) noQuorumPolicy() string {
	p := spec.NoQuorumStop
	a.fsm.Read(func(s *state.State) {
		if s.Spec != nil && s.Spec.Cluster.NoQuorumPolicy != "" {
			p = s.Spec.Cluster.NoQuorumPolicy
		}
	})
	return p
}

// keepsWithoutQuorum reports whether a node that lost its lease keeps its
// exclusive resources (noQuorumPolicy freeze or ignore; the spec refuses
// them without fencing, and the leader waits for a fence before it
// recovers them elsewhere).
func (a *Agent) keepsWithoutQuorum() bool {
	p := a.noQuorumPolicy()
	return p == spec.NoQuorumFreeze || p == spec.NoQuorumIgnore
}

// watchdogOK tells the watchdog loop whether to pet: while the lease is
// valid, while nothing exclusive is active here (a self-fence that
// completed), or while noQuorumPolicy keeps resources without a lease. A
// hung agent stops petting by itself; so does one whose self-fence does
// not complete: then the machine resets within the watchdog timeout.
func (a *Agent) watchdogOK() bool {
	return a.holder.Valid(time.Now()) || !a.exec.HasExclusive() || a.keepsWithoutQuorum()
}
