package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/breakglass/breakglass/internal/engine"
	"github.com/breakglass/breakglass/internal/playbook"
	"github.com/breakglass/breakglass/internal/runner"
	"github.com/breakglass/breakglass/internal/transport"
	"github.com/breakglass/breakglass/tasks"
)

func TestClosedBeforeAuth(t *testing.T) {
	reset := &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}
	handshake := func(err error) error {
		return &transport.DialError{Target: "h", Stage: transport.StageHandshake, Err: fmt.Errorf("127.0.0.1:22: %w", fmt.Errorf("ssh: handshake failed: %w", err))}
	}
	cases := []struct {
		err  error
		want bool
	}{
		{handshake(io.EOF), true},
		{handshake(reset), true},
		{fmt.Errorf("bg-ops1 via direct: %w", handshake(io.EOF)), true},
		{handshake(context.DeadlineExceeded), false},
		{handshake(errors.New("ssh: no common algorithm")), false},
		{&transport.DialError{Target: "h", Stage: transport.StageConnect, Err: syscall.ECONNREFUSED}, false},
		{&transport.DialError{Target: "h", Stage: transport.StageAuth, Err: io.EOF}, false},
		{io.EOF, false},
		{nil, false},
	}
	for _, c := range cases {
		if got := closedBeforeAuth(c.err); got != c.want {
			t.Errorf("closedBeforeAuth(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

// TestDialRetriesClosedBeforeAuth: a control connection sshd closes before
// authentication (a penalised address) is dialled again until it gets in,
// or until the deadline is near; other failures are not retried.
func TestDialRetriesClosedBeforeAuth(t *testing.T) {
	defer func(d, m time.Duration) { preauthRetryDelay, preauthRetryMargin = d, m }(preauthRetryDelay, preauthRetryMargin)
	preauthRetryDelay, preauthRetryMargin = 10*time.Millisecond, 50*time.Millisecond
	closed := &transport.DialError{Target: "h", Stage: transport.StageHandshake, Err: fmt.Errorf("ssh: handshake failed: %w", io.EOF)}
	dialer := func(fails int, err error) (*fallbackDialer, *int) {
		n := 0
		f := &fallbackDialer{first: func(context.Context, transport.Target) (runner.Conn, error) {
			n++
			if n <= fails {
				return nil, err
			}
			return ownLogin{}, nil
		}}
		return f, &n
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	f, n := dialer(3, closed)
	if _, err := f.Dial(ctx, transport.Target{Name: "h"}); err != nil || *n != 4 {
		t.Errorf("dropped 3 times: err %v after %d dials, want success on the 4th", err, *n)
	}

	short, cancel2 := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel2()
	f, n = dialer(1<<30, closed)
	_, err := f.Dial(short, transport.Target{Name: "h"})
	if err == nil || !strings.Contains(err.Error(), "closed before authentication on each of") || *n < 2 {
		t.Errorf("always dropped: err %v after %d dials", err, *n)
	}
	if short.Err() != nil {
		t.Errorf("the retries ran into the deadline instead of stopping before it")
	}

	refused := &transport.DialError{Target: "h", Stage: transport.StageConnect, Err: syscall.ECONNREFUSED}
	f, n = dialer(1, refused)
	f.jobs = map[string]*runner.Job{}
	if _, err := f.Dial(ctx, transport.Target{Name: "h"}); err == nil || *n != 1 {
		t.Errorf("connection refused: err %v after %d dials, want 1 dial and the error", err, *n)
	}
}

// TestFallbackWaitsOutPenalty: when the control user is refused and the
// break-glass ways in are closed before authentication (sshd penalising
// the address, e.g. for that very refusal), the fallback tries the cut
// ones again until one gets in; a refused way in is never tried again.
func TestFallbackWaitsOutPenalty(t *testing.T) {
	defer func(d, m time.Duration) { preauthRetryDelay, preauthRetryMargin = d, m }(preauthRetryDelay, preauthRetryMargin)
	preauthRetryDelay, preauthRetryMargin = 10*time.Millisecond, 50*time.Millisecond
	closed := &transport.DialError{Target: "h", Stage: transport.StageHandshake, Err: fmt.Errorf("ssh: handshake failed: %w", io.EOF)}
	denied := &transport.DialError{Target: "h", Stage: transport.StageAuth, Err: errors.New("ssh: unable to authenticate")}
	v := &tasks.VerifyAccess{
		Logins: []tasks.VerifyLogin{{User: "bg-ops1", KeyFile: "/k1"}, {User: "bg-ops2", KeyFile: "/k2"}},
		Paths:  []tasks.VerifyPath{{Path: engine.Path{Name: "direct"}}},
	}
	dialer := func(cuts int) (*fallbackDialer, map[string]int) {
		calls := map[string]int{}
		f := &fallbackDialer{
			plan: &plan{pb: &playbook.Playbook{Dir: "/"}},
			jobs: map[string]*runner.Job{"h": {Name: "h", Fallback: []runner.Task{{Module: "verify_access", Mod: v}}}},
			first: func(context.Context, transport.Target) (runner.Conn, error) {
				calls["admin"]++
				return nil, denied
			},
			probe: func(_ context.Context, _ transport.Target, user, _ string, _ engine.Path) (runner.Conn, error) {
				calls[user]++
				if user == "bg-ops2" {
					return nil, fmt.Errorf("%s via direct: %w", user, denied)
				}
				if calls[user] <= cuts {
					return nil, fmt.Errorf("%s via direct: %w", user, closed)
				}
				return ownLogin{}, nil
			},
		}
		return f, calls
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	f, calls := dialer(3)
	if _, err := f.Dial(ctx, transport.Target{Name: "h", User: "admin"}); err != nil {
		t.Fatalf("cut 3 times: %v (calls %v)", err, calls)
	}
	if calls["admin"] != 1 || calls["bg-ops1"] != 4 || calls["bg-ops2"] != 1 {
		t.Errorf("logins made: %v, want admin 1, bg-ops1 4 (3 cut), bg-ops2 1 (refused, never again)", calls)
	}

	short, cancel2 := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel2()
	f, calls = dialer(1 << 30)
	_, err := f.Dial(short, transport.Target{Name: "h", User: "admin"})
	if err == nil || !strings.Contains(err.Error(), "PerSourcePenalties") || calls["bg-ops1"] < 2 || calls["bg-ops2"] != 1 {
		t.Errorf("always cut: err %v, calls %v", err, calls)
	}
	if short.Err() != nil {
		t.Errorf("the retries ran into the deadline instead of stopping before it")
	}
}
