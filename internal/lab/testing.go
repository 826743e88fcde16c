package lab

import (
	"context"
	"os"
	"testing"
	"time"
)

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
