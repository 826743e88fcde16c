package transport

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestHostLockedError(t *testing.T) {
	err := error(&HostLockedError{Holder: "breakglass apply pb.yml (controller c, pid 7)", Waited: LockWait})
	if !errors.Is(err, ErrHostLocked) {
		t.Error("not ErrHostLocked")
	}
	if !strings.Contains(err.Error(), "pid 7") || !strings.Contains(err.Error(), LockFile) {
		t.Errorf("message: %s", err)
	}
	if got := cleanNote("a\x1b[31mb\nc" + strings.Repeat("d", 1000)); len(got) > maxNote || strings.ContainsAny(got, "\x1b\n") {
		t.Errorf("cleanNote kept %q", got)
	}
}

// testHostLock: one run holds a host; a second waits, then fails with the
// first one's note; the lock goes when released, and when the holding
// connection dies without a word.
func testHostLock(t *testing.T, env *labEnv) {
	h := env.lab.Hosts[1]
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c1 := env.dial(t, Config{}, env.target(h))
	c2 := env.dial(t, Config{}, env.target(h))
	release, err := (&Become{Client: c1}).Lock(ctx, "first run, pid 101", LockWait)
	if err != nil {
		t.Fatalf("lock: %v", err)
	}
	if got := hostExec(t, h, "stat -c '%U %a' /run/breakglass; cat /run/breakglass/lock"); got != "root 700\nfirst run, pid 101\n" {
		t.Errorf("lock dir and note: %q", got)
	}
	start := time.Now()
	_, err = (&Become{Client: c2}).Lock(ctx, "second run", time.Second)
	var held *HostLockedError
	if !errors.As(err, &held) || !errors.Is(err, ErrHostLocked) || held.Holder != "first run, pid 101" {
		t.Fatalf("second lock: want the first run's note, got %v", err)
	}
	if d := time.Since(start); d < time.Second || d > 10*time.Second {
		t.Errorf("second lock gave up after %s, want about 1s", d)
	}
	release()
	release2, err := (&Become{Client: c2}).Lock(ctx, "second run", LockWait)
	if err != nil {
		t.Fatalf("after release: %v", err)
	}
	// The holder's connection dies (no release): sshd ends the session
	// and the kernel drops the lock.
	c2.Close()
	_ = release2
	c3 := env.dial(t, Config{}, env.target(h))
	release3, err := (&Become{Client: c3}).Lock(ctx, "third run", LockWait)
	if err != nil {
		t.Fatalf("after the holder's connection closed: %v", err)
	}
	release3()
	c1.Close()
	c3.Close()
}
