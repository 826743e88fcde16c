package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// start launches the host's namespace, running the init script at path.
func (h *Host) start(script string) error {
	logf, err := os.Create(filepath.Join(h.Dir, "init.log"))
	if err != nil {
		return fmt.Errorf("create init log: %w", err)
	}
	defer logf.Close() // the child has its own copy
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("create control socket: %w", err)
	}
	// The kernel adds the sender's pid, as this process sees it, to what
	// the init writes.
	if err := syscall.SetsockoptInt(fds[0], syscall.SOL_SOCKET, syscall.SO_PASSCRED, 1); err != nil {
		syscall.Close(fds[0])
		syscall.Close(fds[1])
		return fmt.Errorf("control socket: %w", err)
	}
	ours := os.NewFile(uintptr(fds[0]), "lab-control")
	theirs := os.NewFile(uintptr(fds[1]), "lab-control-init")
	defer theirs.Close()
	conn, err := net.FileConn(ours)
	ours.Close() // FileConn dups it
	if err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	h.ctl = conn.(*net.UnixConn)

	cmd := exec.Command("unshare", "--mount", "--uts", "--pid", "--fork", "--kill-child",
		"--propagation", "private", "--mount-proc",
		"--", "/bin/bash", script)
	cmd.Env = hostEnv
	cmd.Dir = "/"
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.ExtraFiles = []*os.File{theirs} // fd 3
	cmd.SysProcAttr = hostSysProcAttr()
	if err := spawn(cmd); err != nil {
		h.ctl.Close()
		return fmt.Errorf("start unshare: %w", err)
	}
	h.started(cmd)
	return nil
}

// setup waits for the init's "ready", records its pid, mounts the host's
// dirs into its namespace and lets it start sshd. lower is the overlay
// lower dir for /etc, or "" when h.Dir/etc is a full copy.
func (h *Host) setup(ctx context.Context, lower string) error {
	stop := context.AfterFunc(ctx, func() { h.ctl.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	// The init's pid comes with the first bytes it sends.
	var msg []byte
	pid := 0
	for !bytes.Contains(msg, []byte("\n")) && len(msg) < 64 {
		buf := make([]byte, 16)
		oob := make([]byte, syscall.CmsgSpace(syscall.SizeofUcred))
		n, oobn, _, _, err := h.ctl.ReadMsgUnix(buf, oob)
		msg = append(msg, buf[:max(n, 0)]...) // n is -1 on some errors
		if pid == 0 && oobn > 0 {
			p, perr := senderPID(oob[:oobn])
			if perr != nil {
				return fmt.Errorf("init pid: %w", perr)
			}
			pid = p
		}
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("wait for init: %w", ctx.Err())
			}
			select { // let the init's last words reach its log
			case <-h.exited:
			case <-time.After(time.Second):
			}
			return fmt.Errorf("wait for init: got %q, %w%s", msg, err, h.diagnostics())
		}
	}
	if string(msg) != "ready\n" || pid == 0 {
		return fmt.Errorf("wait for init: got %q from pid %d, want \"ready\" with credentials", msg, pid)
	}
	// The sender must be unshare's child, the namespace's pid 1.
	if ppid, err := parentPID(pid); err != nil || ppid != h.PID {
		return fmt.Errorf("init pid %d is not a child of unshare %d", pid, h.PID)
	}
	p, err := os.FindProcess(pid) // a pidfd on Linux: later signals cannot hit a reused pid
	if err != nil {
		return fmt.Errorf("find init pid %d: %w", pid, err)
	}
	h.mu.Lock()
	h.init, h.initPID = p, pid
	h.mu.Unlock()
	if err := inNamespaces(pid, func() error { return setupMounts(h.Dir, lower, h.Name) }); err != nil {
		return err
	}
	if _, err := h.ctl.Write([]byte("go\n")); err != nil {
		return fmt.Errorf("tell init to go on: %w", err)
	}
	return nil
}

// senderPID returns the pid in a unix socket message's credentials.
func senderPID(oob []byte) (int, error) {
	msgs, err := syscall.ParseSocketControlMessage(oob)
	if err != nil {
		return 0, err
	}
	for i := range msgs {
		if cred, err := syscall.ParseUnixCredentials(&msgs[i]); err == nil {
			return int(cred.Pid), nil
		}
	}
	return 0, errors.New("no credentials in the init's message")
}

// hostSysProcAttr is how unshare is started: SIGKILLed when this process
// dies (even by SIGKILL); unshare's --kill-child passes that on to the
// namespace's pid 1, whose death kills the rest of the namespace. Its own
// process group keeps a terminal's Ctrl-C away from it: Stop decides.
func hostSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
}

// started records cmd, the host's init, once it runs, and closes h.exited
// when it ends.
func (h *Host) started(cmd *exec.Cmd) {
	h.cmd = cmd
	h.PID = cmd.Process.Pid
	h.exited = make(chan struct{})
	go func() {
		cmd.Wait()
		close(h.exited)
	}()
}
