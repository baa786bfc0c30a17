package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// Status describes a lab as it is now.
type Status struct {
	Name      string
	Subnet    string
	StateDir  string
	Cgroup    string // "v1" or "v2"
	Complete  bool   // false: Up did not finish; run down
	Hosts     []HostStatus
	Partition [][]string // groups of host names; nil when not partitioned
	OneWay    []OneWayCut
}

// OneWayCut is a directed cut made by PartitionOneWay.
type OneWayCut struct{ From, To []string }

// HostStatus describes one host.
type HostStatus struct {
	Name       string
	NS         string
	Addr       netip.Addr
	LinkUp     bool
	Isolated   bool
	PoweredOff bool
	Paused     bool
	CgroupPIDs []int // live processes in the host's cgroup
	Procs      []ProcStatus
}

// ProcStatus describes a process recorded by Start.
type ProcStatus struct {
	Name  string
	PID   int
	State string // "running", "paused" or "dead"
	Argv  []string
	Log   string
}

// Status reports the hosts, their links, processes and the partitions.
func (l *Lab) Status() (*Status, error) {
	var s *Status
	err := l.view(func(st *state) error {
		s = &Status{
			Name: st.Name, Subnet: st.Subnet, StateDir: l.stateDir, Cgroup: st.CgroupKind,
			Complete: st.Complete, Partition: st.Partition,
		}
		for _, ow := range st.OneWay {
			s.OneWay = append(s.OneWay, OneWayCut{From: ow.From, To: ow.To})
		}
		links := linkStates(st.BridgeNS)
		cg := cgroupOpsFor(st.CgroupKind)
		for _, hs := range st.Hosts {
			addr, _ := netip.ParseAddr(hs.Addr)
			frozen, _ := cg.frozen(hs.Cgroup)
			h := HostStatus{
				Name: hs.Name, NS: hs.NS, Addr: addr, LinkUp: links[hs.Port],
				Isolated: hs.Isolated, PoweredOff: hs.PoweredOff, Paused: frozen,
			}
			pids, _ := cgroupPIDs(hs.Cgroup)
			for _, p := range pids {
				if procAlive(p) {
					h.CgroupPIDs = append(h.CgroupPIDs, p)
				}
			}
			for _, p := range hs.Procs {
				state := "dead"
				if procRunning(p.PID, p.Start) {
					state = "running"
					if frozen {
						state = "paused"
					}
				}
				h.Procs = append(h.Procs, ProcStatus{
					Name: p.Name, PID: p.PID, State: state, Argv: p.Argv,
					Log: fmt.Sprintf("%s/%s/%s.log", l.stateDir, hs.Name, p.Name),
				})
			}
			s.Hosts = append(s.Hosts, h)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// linkStates returns, per interface in ns, whether it is administratively up.
func linkStates(ns string) map[string]bool {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := run(ctx, "ip", "-j", "-n", ns, "link", "show")
	m := map[string]bool{}
	if err != nil {
		return m
	}
	var links []struct {
		IfName string   `json:"ifname"`
		Flags  []string `json:"flags"`
	}
	if json.Unmarshal(out, &links) == nil {
		for _, k := range links {
			m[k.IfName] = slices.Contains(k.Flags, "UP")
		}
	}
	return m
}

// String renders s for humans.
func (s *Status) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "lab %s  subnet %s  cgroup %s  state %s\n", s.Name, s.Subnet, s.Cgroup, s.StateDir)
	if !s.Complete {
		b.WriteString("WARNING: creation did not complete; run down\n")
	}
	for _, h := range s.Hosts {
		var flags []string
		switch {
		case h.PoweredOff:
			flags = append(flags, "powered-off")
		case h.Paused:
			flags = append(flags, "paused")
		default:
			flags = append(flags, "on")
		}
		if h.LinkUp {
			flags = append(flags, "link up")
		} else {
			flags = append(flags, "link down")
		}
		if h.Isolated {
			flags = append(flags, "isolated")
		}
		fmt.Fprintf(&b, "%-4s %-15s netns %-12s %s; %d process(es) in cgroup\n",
			h.Name, h.Addr, h.NS, strings.Join(flags, ", "), len(h.CgroupPIDs))
		for _, p := range h.Procs {
			fmt.Fprintf(&b, "     %-12s pid %-7d %-7s %s  (log %s)\n", p.Name, p.PID, p.State, strings.Join(p.Argv, " "), p.Log)
		}
	}
	if s.Partition == nil && len(s.OneWay) == 0 {
		b.WriteString("partitions: none\n")
	}
	if s.Partition != nil {
		groups := make([]string, len(s.Partition))
		for i, g := range s.Partition {
			groups[i] = strings.Join(g, ",")
		}
		fmt.Fprintf(&b, "partition: %s\n", strings.Join(groups, " | "))
	}
	for _, ow := range s.OneWay {
		fmt.Fprintf(&b, "one-way cut: %s -/-> %s\n", strings.Join(ow.From, ","), strings.Join(ow.To, ","))
	}
	return b.String()
}
