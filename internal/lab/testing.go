package lab

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"
)

// Skip skips a test that cannot run on this machine, loudly, or fails it
// when CI=true: CI installs everything the tests need, so a skip there
// would be a pass that tested nothing.
func Skip(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("CI") == "true" {
		t.Fatalf("cannot run under CI=true: %s", msg)
	}
	t.Skipf("SKIP: %s", msg)
}

// StartTimeout is how long New gives a lab to start.
const StartTimeout = 60 * time.Second

// New starts a lab of n hosts for a test or benchmark and stops it when the
// test ends, passed or failed. When the machine cannot run a lab (see
// Check) it skips the test, loudly, or fails it when CI=true.
func New(t testing.TB, n int) *Lab {
	t.Helper()
	if err := Check(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("lab: %v", err)
		}
		t.Skipf("SKIP: lab needs root and openssh-server: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), StartTimeout)
	defer cancel()
	l, err := Start(ctx, Options{Hosts: n})
	if l != nil {
		// Registered before anything else can fail.
		t.Cleanup(func() {
			if err := l.Stop(); err != nil {
				t.Errorf("%v", err)
			}
		})
	}
	if err != nil {
		t.Fatalf("%v", err)
	}
	return l
}

// RootTimeout bounds building the systemd kinds' roots, which NewKind does
// before, not within, StartTimeout.
const RootTimeout = 10 * time.Minute

// NewKind is New for hosts of kind k. For a systemd kind it first builds
// every systemd kind's root that is not cached, in parallel, once per
// process (a test asking for one kind usually asks for all); a machine
// that cannot (no debootstrap, systemd-nspawn or network) skips the test
// loudly, or fails it when CI=true.
func NewKind(t testing.TB, k Kind, n int) *Lab {
	t.Helper()
	if !k.Systemd() {
		return New(t, n)
	}
	Require(t, k)
	ctx, cancel := context.WithTimeout(context.Background(), StartTimeout)
	defer cancel()
	l, err := Start(ctx, Options{Hosts: n, Kind: k, Prefix: string(k)[:4]})
	if l != nil {
		t.Cleanup(func() {
			if err := l.Stop(); err != nil {
				t.Errorf("%v", err)
			}
		})
	}
	if err != nil {
		t.Fatalf("%v", err)
	}
	return l
}

// Require skips the test, loudly, when this machine cannot run hosts of
// kind k, or fails it when CI=true. For a systemd kind, it builds the
// roots first as NewKind does.
func Require(t testing.TB, k Kind) {
	t.Helper()
	skipOrFail := func(err error) {
		t.Helper()
		if os.Getenv("CI") == "true" {
			t.Fatalf("lab of %s hosts: %v", k, err)
		}
		t.Skipf("SKIP: lab of %s hosts: %v", k, err)
	}
	if err := CheckKind(k); err != nil {
		skipOrFail(err)
	}
	if k.Systemd() {
		if err := prepareRoots(); err != nil {
			skipOrFail(err)
		}
	}
}

var prepareRoots = sync.OnceValue(func() error {
	ctx, cancel := context.WithTimeout(context.Background(), RootTimeout)
	defer cancel()
	start := time.Now()
	err := PrepareRoots(ctx, os.Stderr, SystemdKinds()...)
	if err != nil {
		return fmt.Errorf("build roots: %w", err)
	}
	if d := time.Since(start); d > time.Second {
		fmt.Fprintf(os.Stderr, "breakglass-lab: roots ready in %.0fs\n", d.Seconds())
	}
	return nil
})
