package cibimport

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/paceline/paceline/internal/spec"
)

var labelRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// validName reports whether s is a valid paceline resource or group name.
func validName(s string) bool { return labelRE.MatchString(s) }

// validNode reports whether s is a valid paceline node name (dotted labels).
func validNode(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, l := range strings.Split(s, ".") {
		if !labelRE.MatchString(l) {
			return false
		}
	}
	return true
}

// sanitize turns an arbitrary id into a DNS label: lowercase, anything but
// letters and digits becomes '-', runs of '-' collapse, no '-' at either
// end, at most 63 characters.
func sanitize(id string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(id) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
			dash = false
		} else if !dash {
			b.WriteByte('-')
			dash = true
		}
	}
	s := strings.Trim(b.String(), "-")
	if len(s) > 63 {
		s = strings.TrimRight(s[:63], "-")
	}
	if s == "" {
		s = "r"
	}
	return s
}

// sanitizeNode is sanitize for each dot-separated label of a host name.
func sanitizeNode(name string) string {
	var parts []string
	for _, l := range strings.Split(name, ".") {
		if strings.Trim(l, "-_ ") == "" {
			continue
		}
		parts = append(parts, sanitize(l))
	}
	s := strings.Join(parts, ".")
	if s == "" {
		s = "node"
	}
	for len(s) > 253 {
		i := strings.LastIndexByte(s, '.')
		if i < 0 {
			s = s[:63]
			break
		}
		s = s[:i]
	}
	return s
}

// namer hands out unique names in one namespace. Ids that are already
// valid keep their name; others get a sanitized name, with a numeric
// suffix when that is taken.
type namer struct {
	used  map[string]string // name -> id holding it
	names map[string]string // id -> name
	valid func(string) bool
	clean func(string) string
}

func newNamer(valid func(string) bool, clean func(string) string) *namer {
	return &namer{used: map[string]string{}, names: map[string]string{}, valid: valid, clean: clean}
}

// reserve gives id its own name if that is valid and free.
func (n *namer) reserve(id string) {
	if _, done := n.names[id]; done {
		return
	}
	if n.valid(id) {
		if _, taken := n.used[id]; !taken {
			n.used[id] = id
			n.names[id] = id
		}
	}
}

// name returns the name of id, assigning one if needed.
func (n *namer) name(id string) string {
	if s, ok := n.names[id]; ok {
		return s
	}
	base := n.clean(id)
	s := base
	for i := 2; ; i++ {
		if _, taken := n.used[s]; !taken {
			break
		}
		suf := "-" + strconv.Itoa(i)
		b := base
		if len(b)+len(suf) > 63 {
			b = strings.TrimRight(b[:63-len(suf)], "-.")
		}
		s = b + suf
	}
	n.used[s] = id
	n.names[id] = s
	return s
}

// parseInterval reads a Pacemaker interval or timeout: a number of seconds,
// a number with a unit (ms, msec, us, usec, s, sec, m, min, h, hr), or an
// ISO 8601 duration (PT1M, P1D).
func parseInterval(v string) (spec.Duration, error) {
	s := strings.TrimSpace(strings.ToLower(v))
	if s == "" {
		return 0, fmt.Errorf("empty")
	}
	if strings.HasPrefix(s, "p") {
		return parseISODuration(s)
	}
	i := 0
	for i < len(s) && (s[i] >= '0' && s[i] <= '9' || s[i] == '.' || (i == 0 && (s[i] == '+' || s[i] == '-'))) {
		i++
	}
	num, unit := s[:i], strings.TrimSpace(s[i:])
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, fmt.Errorf("%q is not a duration", v)
	}
	var mult time.Duration
	switch unit {
	case "", "s", "sec", "secs", "second", "seconds":
		mult = time.Second
	case "ms", "msec", "msecs":
		mult = time.Millisecond
	case "us", "usec", "usecs":
		mult = time.Microsecond
	case "m", "min", "mins", "minute", "minutes":
		mult = time.Minute
	case "h", "hr", "hrs", "hour", "hours":
		mult = time.Hour
	default:
		return 0, fmt.Errorf("%q has an unknown unit %q", v, unit)
	}
	d := f * float64(mult)
	if d < 0 {
		return 0, fmt.Errorf("%q is negative", v)
	}
	if d > float64(math.MaxInt64/2) {
		return 0, fmt.Errorf("%q is too long", v)
	}
	return spec.Duration(time.Duration(d)), nil
}

var isoRE = regexp.MustCompile(`^p(?:(\d+)y)?(?:(\d+)m)?(?:(\d+)w)?(?:(\d+)d)?(?:t(?:(\d+)h)?(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s)?)?$`)

func parseISODuration(s string) (spec.Duration, error) {
	if !strings.Contains(s, "t") && strings.ContainsAny(s, "hs") {
		s = "pt" + s[1:] // Pacemaker also reads "P10S" as ten seconds
	}
	m := isoRE.FindStringSubmatch(s)
	if m == nil || s == "p" || s == "pt" {
		return 0, fmt.Errorf("%q is not an ISO 8601 duration", s)
	}
	units := []time.Duration{365 * 24 * time.Hour, 30 * 24 * time.Hour, 7 * 24 * time.Hour, 24 * time.Hour, time.Hour, time.Minute, time.Second}
	var total float64
	for i, u := range units {
		if m[i+1] == "" {
			continue
		}
		f, err := strconv.ParseFloat(m[i+1], 64)
		if err != nil {
			return 0, fmt.Errorf("%q is not an ISO 8601 duration", s)
		}
		total += f * float64(u)
	}
	if total > float64(math.MaxInt64/2) {
		return 0, fmt.Errorf("%q is too long", s)
	}
	return spec.Duration(time.Duration(total)), nil
}

// scoreInt reads a Pacemaker score as an int clamped to ±1000000. Like
// Pacemaker it reads the leading integer and ignores what follows ("1.0" is 1).
func scoreInt(v string) (int, error) {
	t := strings.TrimSpace(v)
	switch strings.ToUpper(t) {
	case "INFINITY", "+INFINITY":
		return int(spec.Infinity), nil
	case "-INFINITY":
		return -int(spec.Infinity), nil
	}
	i := 0
	if i < len(t) && (t[i] == '+' || t[i] == '-') {
		i++
	}
	j := i
	for j < len(t) && t[j] >= '0' && t[j] <= '9' {
		j++
	}
	if j == i {
		return 0, fmt.Errorf("%q is not a number or INFINITY", v)
	}
	digits := t[i:j]
	if len(digits) > 12 {
		digits = "9999999999"
	}
	n, err := strconv.ParseInt(digits, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a number or INFINITY", v)
	}
	if t[0] == '-' {
		n = -n
	}
	if n > int64(spec.Infinity) {
		n = int64(spec.Infinity)
	}
	if n < -int64(spec.Infinity) {
		n = -int64(spec.Infinity)
	}
	return int(n), nil
}

func ptr[T any](v T) *T { return &v }
