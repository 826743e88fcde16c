package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/breakglass/breakglass/internal/lab"
)

// needLab skips (loudly) or, with CI=true, fails a test when this machine
// cannot run a lab.
func needLab(t *testing.T) {
	t.Helper()
	if err := lab.Check(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("lab: %v", err)
		}
		t.Skipf("SKIP: lab needs root and openssh-server: %v", err)
	}
}

// syncBuffer is a bytes.Buffer safe to read while run writes to it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitFor polls buf until it matches re.
func waitFor(t *testing.T, buf *syncBuffer, re *regexp.Regexp) []string {
	t.Helper()
	deadline := time.Now().Add(lab.StartTimeout)
	for time.Now().Before(deadline) {
		if m := re.FindStringSubmatch(buf.String()); m != nil {
			return m
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("output never matched %s:\n%s", re, buf.String())
	return nil
}

func TestUsage(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"nothing", nil, "missing command"},
		{"no hosts", []string{"-n", "0", "--", "true"}, "-n must be at least 1"},
		{"up with command", []string{"up", "--", "true"}, "up takes no command"},
		{"unknown flag", []string{"-bogus", "--", "true"}, "flag provided but not defined"},
		{"unknown kind", []string{"-kind", "centos", "--", "true"}, `unknown lab host kind "centos": want one of namespace, bookworm, trixie`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), tt.args, nil, &stdout, &stderr)
			if code != exitUsage {
				t.Errorf("exit code %d, want %d", code, exitUsage)
			}
			if !strings.Contains(stderr.String(), tt.want) || !strings.Contains(stderr.String(), "usage: breakglass-lab") {
				t.Errorf("stderr = %q, want %q and the usage", stderr.String(), tt.want)
			}
			if stdout.Len() > 0 {
				t.Errorf("stdout = %q, want nothing", stdout.String())
			}
		})
	}
}

// TestCommand runs a command that logs in to every host with the OpenSSH
// client, using only what the variables point to, and exits 7.
func TestCommand(t *testing.T) {
	needLab(t)
	const script = `set -e
test -d "$BG_LAB_DIR"
for addr in $(sed -n 's/.* ansible_host=\([^ ]*\) .*/\1/p' "$BG_LAB_INVENTORY"); do
	ssh -F /dev/null -o BatchMode=yes -o StrictHostKeyChecking=yes \
		-o UserKnownHostsFile="$BG_LAB_KNOWN_HOSTS" -i "$BG_LAB_KEY" \
		admin@"$addr" 'echo "$(hostname) $(sudo -n id -u)"'
done
echo "dir $BG_LAB_DIR"
exit 7`
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"-n", "2", "-prefix", "web", "--", "sh", "-c", script}, nil, &stdout, &stderr)
	if code != 7 {
		t.Fatalf("exit code %d, want the command's 7\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	out := stdout.String()
	if !strings.HasPrefix(out, "web01 0\nweb02 0\ndir ") {
		t.Errorf("stdout:\n%s\nwant both hosts logged in to, with sudo", out)
	}
	if !regexp.MustCompile(`(?m)^web01 +127\.\d+\.\d+\.\d+$`).MatchString(stderr.String()) ||
		!strings.Contains(stderr.String(), "breakglass-lab: stopped 2 hosts") {
		t.Errorf("stderr:\n%s\nwant the host table and the stop message", stderr.String())
	}
	dir := strings.TrimSpace(out[strings.Index(out, "dir ")+4:])
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("lab dir %s remains: %v", dir, err)
	}
}

func TestCommandNotFound(t *testing.T) {
	needLab(t)
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"-n", "1", "--", "/nonexistent/command"}, nil, &stdout, &stderr)
	if code != exitNotFound {
		t.Errorf("exit code %d, want %d", code, exitNotFound)
	}
	if !strings.Contains(stderr.String(), "breakglass-lab: run /nonexistent/command:") ||
		!strings.Contains(stderr.String(), "stopped 1 hosts") {
		t.Errorf("stderr:\n%s", stderr.String())
	}
}

// TestInterrupted cancels the context (SIGINT/SIGTERM in main) while the
// command runs: the command gets SIGTERM and the hosts are stopped.
func TestInterrupted(t *testing.T) {
	needLab(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stdout, stderr := &syncBuffer{}, &syncBuffer{}
	done := make(chan int)
	go func() {
		done <- run(ctx, []string{"-n", "1", "--", "sh", "-c", `echo "dir $BG_LAB_DIR"; exec sleep 60`}, nil, stdout, stderr)
	}()
	dir := waitFor(t, stdout, regexp.MustCompile(`dir (\S+)\n`))[1]
	cancel()
	select {
	case code := <-done:
		if code != 128+15 {
			t.Errorf("exit code %d, want 143 (SIGTERM)", code)
		}
	case <-time.After(termGrace + 5*time.Second):
		t.Fatalf("run did not return after cancel")
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("lab dir %s remains: %v", dir, err)
	}
}

func TestUp(t *testing.T) {
	needLab(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stdout, stderr := &syncBuffer{}, &syncBuffer{}
	done := make(chan int)
	go func() { done <- run(ctx, []string{"up", "-n", "2"}, nil, stdout, stderr) }()
	m := waitFor(t, stdout, regexp.MustCompile(`(?s)export BG_LAB_INVENTORY=(\S+)\nexport BG_LAB_KNOWN_HOSTS=\S+\nexport BG_LAB_KEY=\S+\nexport BG_LAB_DIR=(\S+)\n`))
	inv, err := os.ReadFile(m[1])
	if err != nil || strings.Count(string(inv), "ansible_host=") != 2 {
		t.Errorf("inventory %s: %v\n%s", m[1], err, inv)
	}
	if !strings.Contains(stderr.String(), "Ctrl-C stops them") {
		t.Errorf("stderr:\n%s", stderr.String())
	}
	cancel()
	select {
	case code := <-done:
		if code != exitOK {
			t.Errorf("exit code %d, want 0\n%s", code, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("up did not return after cancel")
	}
	if _, err := os.Stat(m[2]); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("lab dir %s remains: %v", m[2], err)
	}
}

// TestSystemdKind boots a trixie host through the command and logs in to
// it as the variables say.
func TestSystemdKind(t *testing.T) {
	lab.Require(t, lab.Trixie)
	const script = `set -e
addr=$(sed -n 's/.* ansible_host=\([^ ]*\) .*/\1/p' "$BG_LAB_INVENTORY")
ssh -F /dev/null -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile="$BG_LAB_KNOWN_HOSTS" \
	-i "$BG_LAB_KEY" "admin@$addr" 'cat /proc/1/comm; sudo -n true && echo sudo'`
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"-n", "1", "-kind", "trixie", "--", "sh", "-c", script}, nil, &stdout, &stderr)
	if code != exitOK || stdout.String() != "systemd\nsudo\n" {
		t.Fatalf("exit %d, stdout %q, stderr:\n%s", code, stdout.String(), stderr.String())
	}
	if !strings.Contains(stderr.String(), "started 1 trixie hosts") {
		t.Errorf("stderr:\n%s", stderr.String())
	}
}
