package tlsutil

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = CLI(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestCLIRoundTrip(t *testing.T) {
	dir := t.TempDir()
	caDir, out := filepath.Join(dir, "ca"), filepath.Join(dir, "out")

	code, _, stderr := runCLI(t, "issue", "--ca-dir", caDir, "--out", out, "--name", "n1", "--host", "10.0.0.1")
	if code != ExitFailure || !strings.Contains(stderr, "run `paceline tls init --dir "+caDir+" --cluster NAME` first") {
		t.Errorf("issue without a CA: code %d, stderr %q", code, stderr)
	}

	if code, stdout, stderr := runCLI(t, "init", "--dir", caDir, "--cluster", "prod"); code != ExitOK {
		t.Fatalf("init: %d %s", code, stderr)
	} else if !strings.Contains(stdout, "paceline CA prod") {
		t.Errorf("init output %q", stdout)
	}
	if code, _, stderr := runCLI(t, "init", "--dir", caDir, "--cluster", "prod"); code != ExitFailure || !strings.Contains(stderr, "--force") {
		t.Errorf("second init: %d %q", code, stderr)
	}
	if code, _, stderr := runCLI(t, "tls", "init", "--dir", caDir, "--cluster", "prod", "--force"); code != ExitOK {
		t.Errorf("init --force: %d %q", code, stderr)
	}

	code, stdout, stderr := runCLI(t, "issue", "--ca-dir", caDir, "--out", out, "--name", "n1",
		"--host", "10.0.0.1", "--host", "n1.example.com,10.0.0.2", "--days", "30")
	if code != ExitOK {
		t.Fatalf("issue: %d %s", code, stderr)
	}
	if !strings.Contains(stdout, filepath.Join(out, "n1.crt")) {
		t.Errorf("issue output %q", stdout)
	}

	caFile := filepath.Join(caDir, CACertFile)
	code, stdout, stderr = runCLI(t, "show", filepath.Join(out, "n1.crt"), "--ca", caFile)
	if code != ExitOK {
		t.Fatalf("show: %d %s", code, stderr)
	}
	for _, want := range []string{"CN=n1,O=prod", "DNS:n1.example.com", "DNS:n1.paceline", "IP:10.0.0.2", "IP:127.0.0.1",
		"expires in 29 days", "server auth, client auth", "signed by CA: yes"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("show output lacks %q:\n%s", want, stdout)
		}
	}

	if code, stdout, stderr := runCLI(t, "rotate", "--ca-dir", caDir, "--out", out, "--name", "n1"); code != ExitOK {
		t.Fatalf("rotate: %d %s", code, stderr)
	} else if !strings.Contains(stdout, "->") {
		t.Errorf("rotate output %q", stdout)
	}
	if _, err := os.Stat(filepath.Join(out, "n1.crt.prev")); err != nil {
		t.Error(err)
	}
	if code, stdout, _ := runCLI(t, "show", filepath.Join(out, "n1.crt")); code != ExitOK || !strings.Contains(stdout, "not checked") {
		t.Errorf("show without --ca: %d\n%s", code, stdout)
	}

	// A certificate from another CA: show reports it and exits 1.
	other := filepath.Join(dir, "other")
	if code, _, stderr := runCLI(t, "init", "--dir", other, "--cluster", "x"); code != ExitOK {
		t.Fatal(stderr)
	}
	code, stdout, stderr = runCLI(t, "show", "--ca", filepath.Join(other, CACertFile), filepath.Join(out, "n1.crt"))
	if code != ExitFailure || !strings.Contains(stdout, "signed by CA: NO") || !strings.Contains(stderr, "not signed by the CA") {
		t.Errorf("show against another CA: %d\n%s\n%s", code, stdout, stderr)
	}

	// A malformed file: exit 1 naming the file.
	bad := filepath.Join(dir, "bad.crt")
	if err := os.WriteFile(bad, []byte("nonsense"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := runCLI(t, "show", bad); code != ExitFailure || !strings.Contains(stderr, bad+": malformed PEM") {
		t.Errorf("show of a malformed file: %d %q", code, stderr)
	}
}

func TestCLIUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		nil,
		{"frobnicate"},
		{"init", "--cluster", "c"},
		{"init", "--dir", "d"},
		{"init", "--dir", "d", "--cluster", "c", "extra"},
		{"init", "--bogus"},
		{"issue", "--ca-dir", "d", "--out", "o", "--name", "n"},
		{"issue", "--ca-dir", "d", "--out", "o", "--host", "h"},
		{"issue", "--ca-dir", "d", "--out", "o", "--name", "n", "--host", "h", "--days", "0"},
		{"issue", "--ca-dir", "d", "--out", "o", "--name", "n", "--host", "h", "--days", "x"},
		{"rotate", "--ca-dir", "d", "--out", "o"},
		{"show"},
		{"show", "a", "b"},
	} {
		code, _, stderr := runCLI(t, args...)
		if code != ExitUsage {
			t.Errorf("%q: exit %d, want %d (stderr %q)", args, code, ExitUsage, stderr)
		}
		if stderr == "" {
			t.Errorf("%q: no explanation on stderr", args)
		}
	}
	if code, stdout, _ := runCLI(t, "help"); code != ExitOK || !strings.Contains(stdout, "paceline tls") {
		t.Errorf("help: %d %q", code, stdout)
	}
	if code, _, _ := runCLI(t, "issue", "-h"); code != ExitOK {
		t.Errorf("issue -h: %d", code)
	}
}
