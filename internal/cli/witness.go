package cli

import (
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/paceline/paceline/internal/config"
	"github.com/paceline/paceline/internal/qwitness"
)

// DefaultWitnessDataDir is the witness's data dir unless configured: not
// the agent's, so that a witness may share a host with an agent of
// another cluster.
const DefaultWitnessDataDir = "/var/lib/paceline-witness"

func cmdWitness(e *env, args []string) int {
	cfg, code := witnessConfig(e, args)
	if code != ExitOK {
		return code
	}
	level := map[string]slog.Level{"debug": slog.LevelDebug, "info": slog.LevelInfo, "warn": slog.LevelWarn, "error": slog.LevelError}[cfg.LogLevel]
	log := slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: level}))
	w, err := qwitness.New(cfg, log)
	if err != nil {
		fmt.Fprintf(e.stderr, "error: %v\n", err)
		return ExitUsage
	}
	ctx, cancel := signalContext()
	defer cancel()
	log.Info("witness starting", "name", cfg.NodeName, "cluster", cfg.ClusterName, "join", strings.Join(cfg.Join, ","), "pid", os.Getpid())
	if err := w.Run(ctx); err != nil {
		fmt.Fprintf(e.stderr, "error: %v\n", err)
		return ExitFailure
	}
	return ExitOK
}

// witnessConfig reads the witness's config file (if any) and applies the
// flags over it; the role is witness unless the file says otherwise, which
// is an error.
func witnessConfig(e *env, args []string) (config.Config, int) {
	fs := newFlagSet(e, "witness", "witness --config FILE [flags overriding the file]\n\nA quorum witness: the third vote of a two-node cluster (docs/quorum.md). One process serves one cluster.")
	var (
		file                           = fs.String("config", "", "witness config file (YAML, the agent's format with role: witness)")
		name, cluster, bind, adv, data string
		join, token, tokenFile, level  string
		raftPort, gossipPort           int
		tlsCA, tlsCert, tlsKey         string
	)
	fs.StringVar(&name, "node-name", "", "witness name (shown as NAME, role witness)")
	fs.StringVar(&cluster, "cluster-name", "", "cluster name")
	fs.StringVar(&bind, "bind", "", "bind IP")
	fs.StringVar(&adv, "advertise", "", "advertise IP")
	fs.StringVar(&data, "data-dir", "", "data directory (default "+DefaultWitnessDataDir+")")
	fs.StringVar(&join, "join", "", "comma-separated API addresses of the cluster's control nodes")
	fs.StringVar(&token, "join-token", "", "join token")
	fs.StringVar(&tokenFile, "join-token-file", "", "file holding the join token")
	fs.StringVar(&level, "log-level", "", "debug | info | warn | error")
	fs.IntVar(&raftPort, "raft-port", 0, "raft port")
	fs.IntVar(&gossipPort, "gossip-port", 0, "gossip port")
	fs.StringVar(&tlsCA, "tls-ca", "", "CA certificate (with --tls-cert and --tls-key: mutual TLS for raft)")
	fs.StringVar(&tlsCert, "tls-cert", "", "this witness's certificate (made with paceline tls issue)")
	fs.StringVar(&tlsKey, "tls-key", "", "this witness's key")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return config.Config{}, ExitUsage // -h included, as for the agent
	}
	if len(pos) > 0 {
		fmt.Fprintf(e.stderr, "error: unexpected argument %q (paceline witness takes flags only)\n", pos[0])
		return config.Config{}, ExitUsage
	}
	cfg := config.Default()
	cfg.Role, cfg.DataDir = "", DefaultWitnessDataDir
	if *file != "" {
		b, err := os.ReadFile(*file)
		if err != nil {
			fmt.Fprintf(e.stderr, "error: read config: %v\n", err)
			return cfg, ExitUsage
		}
		if err := config.Decode(b, &cfg); err != nil {
			fmt.Fprintf(e.stderr, "error: config %s: %v\n", *file, err)
			return cfg, ExitUsage
		}
	}
	for dst, v := range map[*string]string{&cfg.NodeName: name, &cfg.ClusterName: cluster, &cfg.BindAddr: bind, &cfg.AdvertiseAddr: adv,
		&cfg.DataDir: data, &cfg.JoinToken: token, &cfg.JoinTokenFile: tokenFile, &cfg.LogLevel: level,
		&cfg.TLS.CA: tlsCA, &cfg.TLS.Cert: tlsCert, &cfg.TLS.Key: tlsKey} {
		if v != "" {
			*dst = v
		}
	}
	if join != "" {
		cfg.Join = strings.Split(join, ",")
	}
	if raftPort != 0 {
		cfg.Ports.Raft = raftPort
	}
	if gossipPort != 0 {
		cfg.Ports.Gossip = gossipPort
	}
	if cfg.Role == "" {
		cfg.Role = config.RoleWitness
	}
	if cfg.Role != config.RoleWitness {
		fmt.Fprintf(e.stderr, "error: role: %q; `paceline witness` runs role witness (remove role from the file, or run `paceline agent` for control and remote nodes)\n", cfg.Role)
		return cfg, ExitUsage
	}
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(e.stderr, "error: invalid config:\n%v\n", err)
		return cfg, ExitUsage
	}
	return cfg, ExitOK
}
