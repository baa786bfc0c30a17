package cli

import (
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/paceline/paceline/internal/agent"
	"github.com/paceline/paceline/internal/config"
)

func cmdAgent(e *env, args []string) int {
	fs := newFlagSet(e, "agent", "agent --config FILE [flags overriding the file]")
	var (
		file                                     = fs.String("config", "", "agent config file (YAML)")
		name, cluster, role, bind, adv, data     string
		join, token, tokenFile, logLevel, labels string
		apiPort, raftPort, gossipPort, coarse    int
		expect                                   int
		leaseDur                                 time.Duration
	)
	fs.StringVar(&name, "node-name", "", "node name")
	fs.StringVar(&cluster, "cluster-name", "", "cluster name")
	fs.StringVar(&role, "role", "", "control | remote")
	fs.StringVar(&bind, "bind", "", "bind IP")
	fs.StringVar(&adv, "advertise", "", "advertise IP")
	fs.StringVar(&data, "data-dir", "", "data directory")
	fs.StringVar(&join, "join", "", "comma-separated API addresses of existing nodes")
	fs.StringVar(&token, "join-token", "", "join token")
	fs.StringVar(&tokenFile, "join-token-file", "", "file holding the join token")
	fs.StringVar(&logLevel, "log-level", "", "debug | info | warn | error")
	fs.StringVar(&labels, "labels", "", "node labels k=v,k2=v2")
	fs.IntVar(&apiPort, "api-port", 0, "API port")
	fs.IntVar(&raftPort, "raft-port", 0, "raft port")
	fs.IntVar(&gossipPort, "gossip-port", 0, "gossip port (control pool)")
	fs.IntVar(&coarse, "coarse-port", 0, "gossip port (coarse pool)")
	fs.IntVar(&expect, "bootstrap-expect", -1, "control nodes that bootstrap a new cluster together")
	fs.DurationVar(&leaseDur, "lease", 0, "hold lease duration")
	if _, err := parseFlags(fs, args); err != nil {
		return ExitUsage
	}
	cfg := config.Default()
	if *file != "" {
		var err error
		if cfg, err = config.Load(*file); err != nil {
			fmt.Fprintf(e.stderr, "error: %v\n", err)
			return ExitUsage
		}
	}
	set := func(dst *string, v string) {
		if v != "" {
			*dst = v
		}
	}
	set(&cfg.NodeName, name)
	set(&cfg.ClusterName, cluster)
	set(&cfg.Role, role)
	set(&cfg.BindAddr, bind)
	set(&cfg.AdvertiseAddr, adv)
	set(&cfg.DataDir, data)
	set(&cfg.JoinToken, token)
	set(&cfg.JoinTokenFile, tokenFile)
	set(&cfg.LogLevel, logLevel)
	if join != "" {
		cfg.Join = strings.Split(join, ",")
	}
	if labels != "" {
		cfg.Labels = map[string]string{}
		for _, kv := range strings.Split(labels, ",") {
			k, v, _ := strings.Cut(kv, "=")
			cfg.Labels[k] = v
		}
	}
	for dst, v := range map[*int]int{&cfg.Ports.API: apiPort, &cfg.Ports.Raft: raftPort, &cfg.Ports.Gossip: gossipPort, &cfg.Ports.Coarse: coarse} {
		if v != 0 {
			*dst = v
		}
	}
	if expect >= 0 {
		cfg.BootstrapExpect = expect
	}
	if leaseDur > 0 {
		cfg.Lease.Duration = leaseDur
	}
	level := map[string]slog.Level{"debug": slog.LevelDebug, "info": slog.LevelInfo, "warn": slog.LevelWarn, "error": slog.LevelError}[cfg.LogLevel]
	log := slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: level}))
	a, err := agent.New(cfg, log)
	if err != nil {
		fmt.Fprintf(e.stderr, "error: %v\n", err)
		return ExitUsage
	}
	ctx, cancel := signalContext()
	defer cancel()
	log.Info("agent starting", "node", cfg.NodeName, "cluster", cfg.ClusterName, "role", cfg.Role, "api", a.APIAddr(), "pid", os.Getpid())
	if err := a.Run(ctx); err != nil {
		fmt.Fprintf(e.stderr, "error: %v\n", err)
		return ExitFailure
	}
	return ExitOK
}
