package lab

import (
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"time"
)

// setLink sets the bridge-side port of hs up or down. With the port down
// the host's eth0 loses carrier: no frame leaves or reaches the host.
func setLink(st *state, hs *hostState, up bool) error {
	state := "down"
	if up {
		state = "up"
	}
	_, err := run(context.Background(), "ip", "-n", st.BridgeNS, "link", "set", hs.Port, state)
	return err
}

// hostNames resolves hs to state entries, rejecting unknown and repeated
// hosts.
func (st *state) hostNames(hs []*Host, seen map[string]bool) ([]string, error) {
	var names []string
	for _, h := range hs {
		if _, err := st.host(h); err != nil {
			return nil, err
		}
		if seen[h.Name] {
			return nil, fmt.Errorf("host %s named twice", h.Name)
		}
		seen[h.Name] = true
		names = append(names, h.Name)
	}
	return names, nil
}

// Partition splits the lab into groups: hosts in different groups cannot
// exchange any frame (ARP included); hosts in the same group can. Hosts not
// named in any group form one more group of their own. Partition replaces
// any previous partition, including one-way cuts; isolated hosts stay
// isolated.
func (l *Lab) Partition(groups ...[]*Host) error {
	err := l.update(func(st *state) error {
		seen := map[string]bool{}
		var part [][]string
		for _, g := range groups {
			names, err := st.hostNames(g, seen)
			if err != nil {
				return err
			}
			if len(names) > 0 {
				part = append(part, names)
			}
		}
		var rest []string
		for _, hs := range st.Hosts {
			if !seen[hs.Name] {
				rest = append(rest, hs.Name)
			}
		}
		if len(rest) > 0 {
			part = append(part, rest)
		}
		if len(part) < 2 {
			part = nil // one group: nothing is cut
		}
		st.Partition, st.OneWay = part, nil
		return applyCuts(st)
	})
	if err != nil {
		return fmt.Errorf("lab %s: partition: %w", l.name, err)
	}
	l.log.Info("lab partitioned", "lab", l.name, "groups", fmt.Sprint(groups))
	return nil
}

// PartitionOneWay drops IP packets from every host in from to every host in
// to; packets from to to from still pass (ARP passes both ways, so the
// receiving side can still answer at layer 2). Cuts add to the current
// partition; Heal removes them.
func (l *Lab) PartitionOneWay(from, to []*Host) error {
	err := l.update(func(st *state) error {
		f, err := st.hostNames(from, map[string]bool{})
		if err != nil {
			return err
		}
		t, err := st.hostNames(to, map[string]bool{})
		if err != nil {
			return err
		}
		if len(f) == 0 || len(t) == 0 {
			return fmt.Errorf("need hosts on both sides")
		}
		for _, n := range f {
			if slices.Contains(t, n) {
				return fmt.Errorf("host %s on both sides", n)
			}
		}
		st.OneWay = append(st.OneWay, oneWay{From: f, To: t})
		return applyCuts(st)
	})
	if err != nil {
		return fmt.Errorf("lab %s: partition one-way: %w", l.name, err)
	}
	return nil
}

// Isolate cuts h's link: it can reach nobody and nobody can reach it, and
// its local sockets see no error (like a pulled cable). Heal restores it.
func (l *Lab) Isolate(h *Host) error {
	err := l.update(func(st *state) error {
		hs, err := st.host(h)
		if err != nil {
			return err
		}
		hs.Isolated = true
		return setLink(st, hs, false)
	})
	if err != nil {
		return fmt.Errorf("lab %s: isolate %s: %w", l.name, h.Name, err)
	}
	return nil
}

// Heal removes every partition and one-way cut and brings isolated hosts'
// links back up. Killed hosts stay down until PowerOn.
func (l *Lab) Heal() error {
	err := l.update(func(st *state) error {
		st.Partition, st.OneWay = nil, nil
		if err := applyCuts(st); err != nil {
			return err
		}
		for i := range st.Hosts {
			hs := &st.Hosts[i]
			if hs.Isolated && !hs.PoweredOff {
				if err := setLink(st, hs, true); err != nil {
					return err
				}
			}
			hs.Isolated = false
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("lab %s: heal: %w", l.name, err)
	}
	l.log.Info("lab healed", "lab", l.name)
	return nil
}

// applyCuts replaces the bridge-family table plcut in the bridge namespace
// with rules for st.Partition and st.OneWay, atomically.
func applyCuts(st *state) error {
	port := map[string]string{}
	group := map[string]int{}
	for _, hs := range st.Hosts {
		port[hs.Name] = hs.Port
	}
	for i, g := range st.Partition {
		for _, n := range g {
			group[n] = i
		}
	}
	var rules []string
	if st.Partition != nil {
		for _, a := range st.Hosts {
			for _, b := range st.Hosts {
				if a.Name != b.Name && group[a.Name] != group[b.Name] {
					rules = append(rules, fmt.Sprintf("iifname %q oifname %q drop", a.Port, b.Port))
				}
			}
		}
	}
	for _, ow := range st.OneWay {
		for _, f := range ow.From {
			for _, t := range ow.To {
				rules = append(rules, fmt.Sprintf("iifname %q oifname %q ether type != arp drop", port[f], port[t]))
			}
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "add table bridge %s\ndelete table bridge %s\n", cutTable, cutTable)
	if len(rules) > 0 {
		fmt.Fprintf(&b, "table bridge %s {\n  chain plcut {\n    type filter hook forward priority 0; policy accept;\n", cutTable)
		for _, r := range rules {
			fmt.Fprintf(&b, "    %s\n", r)
		}
		b.WriteString("  }\n}\n")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", st.BridgeNS, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(b.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("nft in %s: %w: %s", st.BridgeNS, err, strings.TrimSpace(string(out)))
	}
	return nil
}
