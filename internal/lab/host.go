package lab

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ErrStopped is returned by a host's methods after its lab was stopped.
var ErrStopped = errors.New("lab host stopped")

// Host is one lab host: a mount+UTS+PID namespace running sshd on Addr:Port,
// or a systemd-nspawn container booting systemd (see Kind).
type Host struct {
	Kind Kind
	Name string
	Addr string // 127.x.y.z
	Port int    // 22
	Dir  string // this host's private dirs: etc (its own files over the template, or a full copy), home, root, log, tmp; a systemd host's upper layer, the overlay's work dir, fs (its mount point) and init.log (the console)
	PID  int    // the unshare process

	cmd    *exec.Cmd
	exited chan struct{} // closed when unshare has exited and been reaped
	ctl    *net.UnixConn // to the init; it exits when this closes

	mu      sync.Mutex
	init    *os.Process // the namespace's pid 1 (unshare's child); a pidfd, so never a reused pid
	initPID int
	stopped bool

	cgroups []string // a systemd host's own cgroups, one per hierarchy
}

// hostEnv is the environment of the namespace init, its sshd and Exec.
var hostEnv = []string{
	"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
	"HOME=/root",
	"USER=root",
	"LOGNAME=root",
	"LANG=C.UTF-8",
}

// initScript is the namespace's pid 1, run by bash. Fd 3 is a unix socket
// to the lab. The init says "ready" on it (the lab learns the init's pid
// from the message's credentials), waits while the lab mounts the host's
// private dirs into its namespace and sets its hostname, starts sshd as a
// daemon the way a sysvinit server does (PidFile /run/sshd.pid, so
// kill -HUP reloads it), and then stays as pid 1, reaping orphans (bash
// reaps every child on SIGCHLD) until the lab's end of the socket closes.
// Signals from inside the namespace cannot kill it; SIGKILL from outside
// does, and then the kernel kills everything else in the namespace.
//
// It uses no external command but sshd: every exec is slow on a small VM.
const initScript = `# breakglass lab host init: pid 1 of the host's namespaces.
set -eu
echo ready >&3
read -r go <&3
[ "$go" = go ]
cd /
/usr/sbin/sshd -E /var/log/auth.log 3<&-
exec </dev/null >/dev/null 2>&1
while read -r _ <&3; do :; done
`

// waitBanner polls Addr:Port until it answers with an SSH banner. It fails
// at once if the host's namespace exits.
func (h *Host) waitBanner(ctx context.Context) error {
	delay := 5 * time.Millisecond
	var last error
	for {
		banner, err := readBanner(ctx, h.addrPort())
		if err == nil {
			if strings.HasPrefix(banner, "SSH-") {
				return nil
			}
			err = fmt.Errorf("not an SSH banner: %q", banner)
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for sshd on %s: %w (last: %v)%s", h.addrPort(), ctx.Err(), last, h.diagnostics())
		case <-h.exitedCh():
			return fmt.Errorf("wait for sshd on %s: host exited: %s%s", h.addrPort(), h.cmd.ProcessState, h.diagnostics())
		case <-time.After(delay):
		}
		if delay < 100*time.Millisecond {
			delay *= 2
		}
	}
}

func (h *Host) exitedCh() <-chan struct{} {
	if h.exited == nil {
		return nil
	}
	return h.exited
}

func (h *Host) addrPort() string { return net.JoinHostPort(h.Addr, strconv.Itoa(h.Port)) }

// readBanner connects to addr and reads the server's first line.
func readBanner(ctx context.Context, addr string) (string, error) {
	d := net.Dialer{Timeout: 2 * time.Second}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReaderSize(c, 256).ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("read banner from %s: %w", addr, err)
	}
	return strings.TrimRight(line, "\r\n"), nil
}

// diagnostics is the tail of the host's init log and auth.log, for errors.
func (h *Host) diagnostics() string {
	var b strings.Builder
	for _, f := range []string{"init.log", "log/auth.log"} {
		data, err := os.ReadFile(filepath.Join(h.Dir, f))
		if err != nil || len(bytes.TrimSpace(data)) == 0 {
			continue
		}
		if len(data) > 2000 {
			data = data[len(data)-2000:]
		}
		fmt.Fprintf(&b, "\n%s %s:\n%s", h.Name, f, bytes.TrimSpace(data))
	}
	if h.Kind.Systemd() {
		b.WriteString(h.systemdDiagnostics())
	}
	return b.String()
}

// Exec runs `/bin/sh -c script` as root inside the host and returns its
// standard output. A non-zero exit is an *ExecError with the exit status
// and standard error.
func (h *Host) Exec(ctx context.Context, script string, stdin []byte) ([]byte, error) {
	h.mu.Lock()
	pid, stopped := h.initPID, h.stopped
	h.mu.Unlock()
	if stopped {
		return nil, fmt.Errorf("%s: %w", h.Name, ErrStopped)
	}
	nsFlags := []string{"-m", "-u", "-p"}
	if h.Kind.Systemd() {
		// The container's init changes with every boot; its namespaces
		// are all the container's own but the network.
		p, err := h.containerInit()
		if err != nil {
			return nil, fmt.Errorf("exec: %w", err)
		}
		pid, nsFlags = p, []string{"-a"}
	}
	if pid == 0 {
		return nil, fmt.Errorf("%s: not started", h.Name)
	}
	args := append(append([]string{"-t", strconv.Itoa(pid)}, nsFlags...), "--", "/bin/sh", "-c", script)
	cmd := exec.CommandContext(ctx, "nsenter", args...)
	cmd.Env = hostEnv
	cmd.Dir = "/"
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	// nsenter forks to enter the PID namespace; kill the whole group on
	// cancel, not just nsenter.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) && ctx.Err() == nil {
			return stdout.Bytes(), &ExecError{Host: h.Name, Status: ee.ExitCode(), State: ee.String(), Stderr: stderr.Bytes()}
		}
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return stdout.Bytes(), fmt.Errorf("%s: exec: %w", h.Name, err)
	}
	return stdout.Bytes(), nil
}

// ExecError is a command that ran in a host and failed.
type ExecError struct {
	Host   string
	Status int    // exit status, -1 if killed by a signal
	State  string // "exit status 1", "signal: killed"
	Stderr []byte
}

func (e *ExecError) Error() string {
	msg := fmt.Sprintf("%s: command failed: %s", e.Host, e.State)
	if s := strings.TrimSpace(string(e.Stderr)); s != "" {
		msg += ": " + s
	}
	return msg
}

// Runner returns the host as an engine.Runner: Run runs cmd with /bin/sh -c
// as root inside the host.
func (h *Host) Runner() interface {
	Run(ctx context.Context, cmd string, stdin []byte) ([]byte, error)
} {
	return hostRunner{h}
}

type hostRunner struct{ h *Host }

func (r hostRunner) Run(ctx context.Context, cmd string, stdin []byte) ([]byte, error) {
	return r.h.Exec(ctx, cmd, stdin)
}

// sshdTimeout bounds KillSSHD and StartSSHD.
const sshdTimeout = 20 * time.Second

// KillSSHD stops the host's main sshd listener (the process in
// /run/sshd.pid; on a systemd host ssh.socket and ssh.service) and waits
// until it is gone and nothing answers on Addr:Port. Sessions already open
// stay, as with a real sshd stop.
func (h *Host) KillSSHD() error {
	ctx, cancel := context.WithTimeout(context.Background(), sshdTimeout)
	defer cancel()
	script := `pid=$(cat /run/sshd.pid) || exit
kill -TERM "$pid" || exit
i=0
while kill -0 "$pid" 2>/dev/null; do
	i=$((i+1))
	if [ "$i" -eq 100 ]; then kill -KILL "$pid" 2>/dev/null || :; fi
	sleep 0.05
done
rm -f /run/sshd.pid`
	if h.Kind.Systemd() {
		script = "systemctl stop ssh.socket ssh.service"
	}
	if _, err := h.Exec(ctx, script, nil); err != nil {
		return fmt.Errorf("kill sshd: %w", err) // Exec's errors name the host
	}
	for {
		_, err := readBanner(ctx, h.addrPort())
		if err != nil && ctx.Err() == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: kill sshd: %s still answers: %w", h.Name, h.addrPort(), ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// StartSSHD starts the host's sshd again, as its init does (systemctl start
// ssh.service on a systemd host), and waits until it answers with an SSH
// banner.
func (h *Host) StartSSHD() error {
	ctx, cancel := context.WithTimeout(context.Background(), sshdTimeout)
	defer cancel()
	script := "/usr/sbin/sshd -E /var/log/auth.log"
	if h.Kind.Systemd() {
		script = "systemctl start ssh.service"
	}
	if _, err := h.Exec(ctx, script, nil); err != nil {
		return fmt.Errorf("start sshd: %w%s", err, h.diagnostics())
	}
	if err := h.waitBanner(ctx); err != nil {
		return fmt.Errorf("%s: start sshd: %w", h.Name, err)
	}
	return nil
}

// kill ends the host: SIGKILL to the namespace's pid 1 (the kernel then
// kills everything else in the namespace, and unshare reaps pid 1 and
// exits), SIGKILL to unshare if it lingers; it returns once unshare is
// reaped.
func (h *Host) kill() error {
	if h.Kind.Systemd() {
		return h.killSystemd()
	}
	h.mu.Lock()
	h.stopped = true
	initp := h.init
	h.mu.Unlock()
	if h.ctl != nil {
		h.ctl.Close() // an init still starting exits when it finds this closed
	}
	if h.cmd == nil {
		return nil
	}
	if initp != nil {
		initp.Signal(syscall.SIGKILL)
	}
	select {
	case <-h.exited:
		return nil
	case <-time.After(2 * time.Second):
	}
	h.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-h.exited:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("%s: unshare %d did not exit after SIGKILL", h.Name, h.PID)
	}
}

// parentPID reads pid's parent from /proc.
func parentPID(pid int) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// pid (comm) state ppid ...; comm may contain spaces and parentheses.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 2 {
		return 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	return strconv.Atoi(f[1])
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && !strings.HasPrefix(s[i+1:], " Z")
}

// Reboot runs `systemctl reboot` in a systemd host and waits until it has
// booted again and sshd answers. The lab starts the container again when
// it reboots, however the reboot was asked for.
func (h *Host) Reboot(ctx context.Context) error {
	if !h.Kind.Systemd() {
		return fmt.Errorf("%s: reboot: %s hosts have no init to reboot", h.Name, h.Kind)
	}
	old, err := h.containerInit()
	if err != nil {
		return fmt.Errorf("reboot: %w", err)
	}
	if _, err := h.Exec(ctx, "systemctl reboot", nil); err != nil {
		return fmt.Errorf("reboot: %w", err)
	}
	return h.WaitRebooted(ctx, old)
}

// BootID returns the pid, as the machine sees it, of the running
// container's init: it changes with every boot.
func (h *Host) BootID() (int, error) { return h.containerInit() }

// WaitRebooted waits until the host runs an init other than old (see
// BootID) and its sshd answers.
func (h *Host) WaitRebooted(ctx context.Context, old int) error {
	for {
		pid, err := h.containerInit()
		if err == nil && pid != old {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: wait for reboot: %w%s", h.Name, ctx.Err(), h.diagnostics())
		case <-h.exitedCh():
			return fmt.Errorf("%s: wait for reboot: host exited: %s%s", h.Name, h.cmd.ProcessState, h.diagnostics())
		case <-time.After(50 * time.Millisecond):
		}
	}
	return h.waitBanner(ctx)
}
