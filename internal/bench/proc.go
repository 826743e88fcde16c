package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
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
//
// The child's stdin, stdout and stderr are unlinked temp files, not pipes:
// a process that lingers with a copy of them (ssh's ControlPersist master)
// cannot hold up Wait, and on a machine loaded to starvation there is no
// copying goroutine that must keep up.
func run(ctx context.Context, s cmdSpec) (*proc, error) {
	cmd := exec.CommandContext(ctx, s.Name, s.Args...)
	cmd.Dir = s.Dir
	if len(s.Env) > 0 {
		cmd.Env = append(cmd.Environ(), s.Env...)
	}
	var files [3]*os.File
	for i := range files {
		f, err := tempFile()
		if err != nil {
			return nil, err
		}
		defer f.Close()
		files[i] = f
	}
	if s.Stdin != nil {
		if _, err := files[0].Write(s.Stdin); err != nil {
			return nil, fmt.Errorf("stdin of %s: %w", s.Name, err)
		}
		if _, err := files[0].Seek(0, io.SeekStart); err != nil {
			return nil, err
		}
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = files[0], files[1], files[2]
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }

	start := time.Now()
	err := cmd.Run()
	p := &proc{Wall: time.Since(start), Code: -1}
	p.Stdout, _ = readAll(files[1])
	p.Stderr, _ = readAll(files[2])
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

// tempFile is a read-write file that is already unlinked.
func tempFile() (*os.File, error) {
	f, err := os.CreateTemp("", "breakglass-bench-io-")
	if err != nil {
		return nil, err
	}
	os.Remove(f.Name())
	return f, nil
}

func readAll(f *os.File) ([]byte, error) {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	return io.ReadAll(f)
}

// tail returns the last n lines of b, for error messages.
func tail(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
