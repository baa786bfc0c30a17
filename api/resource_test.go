package api

import (
	"strings"
	"testing"
	"time"
)

func TestParseLifetime(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"10m": 10 * time.Minute, "1h30m": 90 * time.Minute, "45s": 45 * time.Second, " 2h ": 2 * time.Hour,
		"PT10M": 10 * time.Minute, "pt1h30m": 90 * time.Minute, "P1D": 24 * time.Hour, "P2W": 14 * 24 * time.Hour,
		"P1DT2H": 26 * time.Hour, "PT0.5S": 500 * time.Millisecond, "PT90S": 90 * time.Second,
	} {
		got, err := ParseLifetime(in)
		if err != nil || got != want {
			t.Errorf("ParseLifetime(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for in, msg := range map[string]string{
		"":       "empty lifetime",
		"10x":    "is not a duration",
		"ten":    "is not a duration",
		"0s":     "not positive",
		"-5m":    "not positive",
		"PT0S":   "not positive",
		"P1M":    "years and months",
		"P1Y":    "years and months",
		"P":      "no value",
		"PT":     "no value",
		"PT10":   "without a unit",
		"PTM":    "unit without a number",
		"P1H":    "unknown unit",
		"PT1D":   "unknown unit",
		"P1TT1H": "misplaced T",
	} {
		_, err := ParseLifetime(in)
		if err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("ParseLifetime(%q): %v, want an error mentioning %q", in, err, msg)
		}
	}
}
