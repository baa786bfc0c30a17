// Package benchutil holds what the benchmark programs share: finding the go
// tool, the load average they print next to every figure, nearest-rank
// percentiles and small report helpers.
package benchutil

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// GoTool is the go command of the toolchain that built this program, or
// "go" from PATH.
func GoTool() string {
	if p := filepath.Join(runtime.GOROOT(), "bin", "go"); FileExists(p) {
		return p
	}
	return "go"
}

// FileExists reports whether p exists.
func FileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// LoadAvg is the 1, 5 and 15 minute load average ("?" when unknown).
func LoadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// Rank is the nearest-rank index (1-based) of percentile p in n samples.
func Rank(n int, p float64) int {
	r := int(math.Ceil(p / 100 * float64(n)))
	return max(1, min(n, r))
}

// Percentile of sorted s by nearest rank.
func Percentile(s []time.Duration, p float64) time.Duration { return s[Rank(len(s), p)-1] }

// Ordinal names the n-th of `of` sorted samples ("3rd smallest", "largest").
func Ordinal(n, of int) string {
	if n == of {
		return "largest"
	}
	suf := "th"
	switch {
	case n%100 >= 11 && n%100 <= 13:
	case n%10 == 1:
		suf = "st"
	case n%10 == 2:
		suf = "nd"
	case n%10 == 3:
		suf = "rd"
	}
	return strconv.Itoa(n) + suf + " smallest"
}

// Verdict is "met" or "MISSED".
func Verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}

// Sleep waits d or until ctx is done.
func Sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
