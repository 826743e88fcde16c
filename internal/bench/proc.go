package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// proc is one finished child process, measured.
type proc struct {
	Wall      time.Duration
	MaxRSSKiB int64 // peak resident set of the child itself (wait4 rusage), KiB
	Code      int   // exit code; -1 when killed by a signal
	Stdout    []byte
	Stderr    []byte
}

// cmdSpec says how to run a child.
type cmdSpec struct {
	Name  string
	Args  []string
	Env   []string // added to this process's environment
	Dir   string
	Stdin []byte
}

// run runs the child in its own process group, so a cancelled ctx (Ctrl-C)
// kills it and everything it started, and measures it from start to exit.
// A non-zero exit is not an error; failing to start, or ctx ending, is.
func run(ctx context.Context, s cmdSpec) (*proc, error) {
	cmd := exec.CommandContext(ctx, s.Name, s.Args...)
	cmd.Dir = s.Dir
	if len(s.Env) > 0 {
		cmd.Env = append(cmd.Environ(), s.Env...)
	}
	if s.Stdin != nil {
		cmd.Stdin = bytes.NewReader(s.Stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second

	start := time.Now()
	err := cmd.Run()
	p := &proc{Wall: time.Since(start), Code: -1, Stdout: stdout.Bytes(), Stderr: stderr.Bytes()}
	if ctx.Err() != nil {
		return p, fmt.Errorf("%s: %w", s.Name, ctx.Err())
	}
	if st := cmd.ProcessState; st != nil {
		p.Code = st.ExitCode()
		if ru, ok := st.SysUsage().(*syscall.Rusage); ok {
			p.MaxRSSKiB = ru.Maxrss // KiB on Linux
		}
	}
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		return p, fmt.Errorf("run %s: %w", s.Name, err)
	}
	return p, nil
}

// tail returns the last n lines of b, for error messages.
func tail(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
