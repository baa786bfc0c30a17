package cli

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/paceline/paceline/internal/witness"
)

// cmdSampleService is a small service for the demo, tests and benchmarks:
// an HTTP server (--listen), a ticker (--ticker) and/or a witness writer
// (--witness ADDR) that reports "node epoch" every --every.
func cmdSampleService(e *env, args []string) int {
	fs := newFlagSet(e, "sample-service", "sample-service [--listen ADDR] [--ticker] [--witness ADDR --every 10ms]")
	listen := fs.String("listen", "", "serve HTTP on this address")
	ticker := fs.Bool("ticker", false, "print a line every second")
	wit := fs.String("witness", "", "send 'node epoch' lines to this witness address")
	every := fs.Duration("every", 10*time.Millisecond, "witness period")
	if _, err := parseFlags(fs, args); err != nil {
		return ExitUsage
	}
	node, epoch := os.Getenv("PACELINE_NODE"), os.Getenv("PACELINE_EPOCH")
	if node == "" {
		node, _ = os.Hostname()
	}
	ctx, cancel := signalContext()
	defer cancel()
	errc := make(chan error, 1)
	if *listen != "" {
		mux := http.NewServeMux()
		mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
		mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "hello from %s (resource %s, epoch %s)\n", node, os.Getenv("PACELINE_RESOURCE"), epoch)
		})
		srv := &http.Server{Addr: *listen, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go func() {
			if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		}()
		defer srv.Close()
	}
	if *wit != "" {
		ep, _ := strconv.ParseUint(epoch, 10, 64)
		go witness.Send(ctx, *wit, node, ep, *every)
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ExitOK
		case err := <-errc:
			fmt.Fprintf(e.stderr, "sample-service: %v\n", err)
			return ExitFailure
		case t := <-tick.C:
			if *ticker {
				fmt.Fprintf(e.stdout, "%s tick from %s (epoch %s)\n", t.Format(time.RFC3339), node, epoch)
			}
		}
	}
}
