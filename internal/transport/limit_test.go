package transport

import (
	"bufio"
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestLimitBuffer(t *testing.T) {
	b := &limitBuffer{max: 10, over: make(chan struct{})}
	for _, w := range []string{"abc", "defg", "hij"} {
		if _, err := b.Write([]byte(w)); err != nil {
			t.Fatalf("write %q: %v", w, err)
		}
	}
	if cap(b.b) > 10 {
		t.Errorf("capacity %d over the limit 10", cap(b.b))
	}
	if _, err := b.Write([]byte("k")); err == nil {
		t.Fatal("a write past the limit succeeded")
	}
	select {
	case <-b.over:
	default:
		t.Error("over was not closed")
	}
	if _, err := b.Write(nil); err == nil {
		t.Error("a write after going over succeeded")
	}
	if string(b.Bytes()) != "abcdefghij" {
		t.Errorf("kept %q", b.Bytes())
	}
}

func TestReadFramed(t *testing.T) {
	long := strings.Repeat("x", 10000) // longer than a bufio buffer
	for _, tc := range []struct {
		name, in string
		limit    int
		failOver bool
		body     string
		tail     string
		err      error
	}{
		{"plain", "a\nb\n\n@@m 0\n", 100, true, "a\nb\n", "0", nil},
		{"mark inside a line is data", "x@@m 1\n\n@@m 2\n", 100, true, "x@@m 1\n", "2", nil},
		{"long line", long + "\n\n@@m 0\n", 20000, true, long + "\n", "0", nil},
		{"long line over the limit fails", long + "\n\n@@m 0\n", 5000, true, "", "", ErrOutputLimit},
		{"over the limit, drained", long + "\nend\n\n@@m 3\n", 5000, false, long[:4096], "3", nil}, // whole fragments of a 4 KiB buffer
		{"stream ends", "a\n", 100, true, "a\n", "", errors.New("EOF")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body, tail, err := readFramed(bufio.NewReader(strings.NewReader(tc.in)), "@@m ", tc.limit, tc.failOver)
			switch {
			case tc.err == nil && err != nil:
				t.Fatalf("error %v", err)
			case tc.err != nil && err == nil:
				t.Fatalf("no error, want %v", tc.err)
			case errors.Is(tc.err, ErrOutputLimit) && !errors.Is(err, ErrOutputLimit):
				t.Fatalf("error %v, want ErrOutputLimit", err)
			}
			if err != nil {
				return
			}
			if string(body) != tc.body || tail != tc.tail {
				t.Errorf("got %q %q, want %q %q", body, tail, tc.body, tc.tail)
			}
		})
	}
}

func TestOutputLimitError(t *testing.T) {
	err := error(&OutputLimitError{Limit: MaxOutput})
	if !errors.Is(err, ErrOutputLimit) {
		t.Error("not ErrOutputLimit")
	}
	if !strings.Contains(err.Error(), "16 MiB") {
		t.Errorf("message does not name the limit: %s", err)
	}
	if outputLimit(WithOutputLimit(context.Background(), 1<<30)) != MaxOutput {
		t.Error("a caller got a limit over MaxOutput")
	}
	if outputLimit(WithOutputLimit(context.Background(), 100)) != 100 {
		t.Error("a smaller limit was not kept")
	}
}

// testOutputLimit: a command that writes more than its limit fails with
// ErrOutputLimit, in a session of its own and in the root shell, without
// holding more than the limit, and the connection (and the next root
// shell) keeps working.
func testOutputLimit(t *testing.T, env *labEnv) {
	c := env.dial(t, Config{}, env.target(env.lab.Hosts[0]))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	small := WithOutputLimit(ctx, 1<<20)

	if _, err := c.Run(small, "head -c 50000000 /dev/zero", nil); !errors.Is(err, ErrOutputLimit) {
		t.Errorf("session: want ErrOutputLimit, got %v", err)
	}
	if out, err := c.Run(small, "head -c 1000000 /dev/zero | tr '\\0' x", nil); err != nil || len(out) != 1000000 {
		t.Errorf("session under the limit: %d bytes, %v", len(out), err)
	}
	// One line with no newline at all, in the root shell.
	b := &Become{Client: c}
	defer b.Close()
	if _, err := b.Run(small, "head -c 50000000 /dev/zero", nil); !errors.Is(err, ErrOutputLimit) {
		t.Errorf("root shell: want ErrOutputLimit, got %v", err)
	}
	if out, err := b.Run(ctx, "id -un", nil); err != nil || string(out) != "root\n" {
		t.Errorf("root shell after the limit: %q %v", out, err)
	}
	// Stderr is drained past its cap: the stream stays framed.
	out, err := b.Run(ctx, "head -c 5000000 /dev/zero >&2; echo done", nil)
	if err != nil || string(out) != "done\n" {
		t.Errorf("stderr flood: %q %v", out, err)
	}
	if out, err := c.Run(ctx, "echo alive", nil); err != nil || string(out) != "alive\n" {
		t.Errorf("connection after the limits: %q %v", out, err)
	}
}
