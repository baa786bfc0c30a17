package api

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// busyThen answers 503 (no leader) n times, then 200 with {"leader":"x"}.
func busyThen(n int32) (*httptest.Server, *atomic.Int32) {
	var calls atomic.Int32
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) <= n {
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte(`{"status":503,"error":"no quorum: no leader is known"}`))
			return
		}
		w.Write([]byte(`{"cluster":"c","leader":"x"}`))
	}))
	return s, &calls
}

func TestRetryBusyUntilLeader(t *testing.T) {
	s, calls := busyThen(2)
	defer s.Close()
	c := NewClient([]string{s.URL}, "t", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := c.Status(ctx)
	if err != nil || st.Leader != "x" {
		t.Fatalf("Status = %+v, %v; want success after the election", st, err)
	}
	if calls.Load() != 3 {
		t.Fatalf("%d calls, want 3", calls.Load())
	}
}

func TestNoRetryWhenDisabled(t *testing.T) {
	s, calls := busyThen(1)
	defer s.Close()
	c := NewClient([]string{s.URL}, "t", nil)
	c.RetryBusy = false
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := c.Status(ctx)
	var ae *Error
	if !errors.As(err, &ae) || ae.Status != http.StatusServiceUnavailable || calls.Load() != 1 {
		t.Fatalf("err %v after %d calls; want the 503 at once", err, calls.Load())
	}
}

func TestClientErrorsAreFinal(t *testing.T) {
	var calls atomic.Int32
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.WriteHeader(http.StatusBadRequest)
		w.Write([]byte(`{"status":400,"error":"the spec was refused; nothing changed","details":["line 3: x: bad"]}`))
	}))
	defer s.Close()
	c := NewClient([]string{s.URL, s.URL}, "t", nil)
	_, err := c.Apply(context.Background(), []byte("x"), false, "")
	var ae *Error
	if !errors.As(err, &ae) || ae.Status != 400 || calls.Load() != 1 || !strings.Contains(err.Error(), "line 3: x: bad") {
		t.Fatalf("err %v after %d calls; want the 400 with its details, once", err, calls.Load())
	}
}

func TestUnreachable(t *testing.T) {
	c := NewClient([]string{"127.0.0.1:1"}, "t", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := c.Status(ctx)
	if !errors.Is(err, ErrUnreachable) {
		t.Fatalf("err %v, want ErrUnreachable", err)
	}
}
