package transport

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/breakglass/breakglass/internal/shell"
)

// LockDir is the directory on each host that holds the run lock: root's
// alone (0700), under /run so that a reboot clears it. Not /run/lock,
// which every user may write (1777): there anyone could plant a symlink
// or hold the lock.
const LockDir = "/run/breakglass"

// LockFile is the run lock: flock(2)ed by the run that holds the host, and
// holding a line about that run, for the message another run shows.
const LockFile = LockDir + "/lock"

// LockWait is how long a run waits for another run's lock on a host before
// that host fails: long enough for a short run (an audit, a converged
// apply) to end, short enough not to stall a fleet behind one busy host.
const LockWait = 5 * time.Second

// ErrHostLocked: another breakglass run holds the host (errors.Is matches
// every *HostLockedError).
var ErrHostLocked = errors.New("another breakglass run holds the host")

// HostLockedError is a host whose run lock another run held for longer
// than this run waited.
type HostLockedError struct {
	// Holder is what the holding run wrote about itself. It comes from
	// the host, so it is only shown, never acted upon.
	Holder string
	Waited time.Duration
}

func (e *HostLockedError) Error() string {
	who := e.Holder
	if who == "" {
		who = "a run that left no note"
	}
	return fmt.Sprintf("another breakglass run holds this host (lock %s, waited %s): %s", LockFile, e.Waited, who)
}

// Is makes errors.Is(err, ErrHostLocked) true.
func (e *HostLockedError) Is(target error) bool { return target == ErrHostLocked }

// Holder is a connection that can start a command that runs until the
// caller releases it (Client).
type Holder interface {
	Hold(ctx context.Context, cmd string, stdin []byte) (line string, release func(), err error)
}

// maxNote bounds the note a run leaves in the lock file, and what is read
// back of another run's note.
const maxNote = 400

// lockScript takes the lock (as root) and keeps it until its input ends:
// the controller releases it, or sshd closes the session because the
// connection died, and the kernel drops the flock with the last process
// holding the file open (cat). Its first line of output says what
// happened: "bg-lock-held", "bg-lock-busy NOTE" or "bg-lock-error WHY".
// It runs in a session of its own, so no other command of the run
// inherits the lock's descriptor (a detached revert would hold it on).
func lockScript(note string, wait time.Duration) string {
	secs := max(int((wait+time.Second-1)/time.Second), 0)
	return `PATH=/usr/sbin:/usr/bin:/sbin:/bin; export PATH
LC_ALL=C; export LC_ALL
umask 077
d=` + LockDir + ` f=` + LockFile + `
bg_err() { printf 'bg-lock-error %s\n' "$*"; exit 0; }
if [ -L "$d" ] || { [ -e "$d" ] && [ ! -d "$d" ]; }; then bg_err "$d is not a directory"; fi
[ -d "$d" ] || mkdir -m 0700 "$d" 2>/dev/null || [ -d "$d" ] || bg_err "cannot create $d"
{ chown 0:0 "$d" && chmod 0700 "$d"; } || bg_err "cannot make $d root's alone (0700)"
command -v flock >/dev/null 2>&1 || bg_err "flock(1) (util-linux) is not installed: cannot take the run lock"
if [ -L "$f" ] || { [ -e "$f" ] && [ ! -f "$f" ]; }; then rm -f -- "$f" || bg_err "cannot remove $f"; fi
exec 9>>"$f" || bg_err "cannot open $f"
if ! flock -w ` + strconv.Itoa(secs) + ` 9; then
	printf 'bg-lock-busy %s\n' "$(head -c ` + strconv.Itoa(maxNote) + ` -- "$f" | tr -c '[:print:]' ' ')"
	exit 0
fi
printf '%s\n' ` + shell.Quote(note) + ` >"$f"
echo bg-lock-held
exec cat >/dev/null
`
}

// cleanNote keeps a note to one line of printable ASCII, at most maxNote
// bytes: a note is shown to people, and one from a host is untrusted.
func cleanNote(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c < 0x20 || c > 0x7e {
			b[i] = ' '
		}
	}
	s = strings.Join(strings.Fields(string(b)), " ")
	if len(s) > maxNote {
		s = s[:maxNote]
	}
	return s
}

// Lock takes the host's run lock as root and holds it until release is
// called, or the connection ends (then sshd ends the session and the
// kernel drops the lock: a run that dies never leaves it behind). It
// waits up to wait for another run to release it; when it does not, the
// error is a *HostLockedError quoting that run's note. note says who this
// run is (controller, pid, user, start, command line); it is written into
// the lock file for that message only.
func (b *Become) Lock(ctx context.Context, note string, wait time.Duration) (release func(), err error) {
	h, ok := b.Client.(Holder)
	if !ok {
		return nil, errors.New("take the host's run lock: this connection cannot hold a session open")
	}
	script := lockScript(cleanNote(note), wait)
	user := b.Client.User()
	var cmd string
	var stdin []byte
	switch {
	case user == "root":
		cmd = "env LC_ALL=C /bin/sh -c " + shell.Quote(script)
	case b.Password == "":
		cmd = "env LC_ALL=C sudo -n -- /bin/sh -c " + shell.Quote(script)
	default:
		if strings.ContainsAny(b.Password, "\n\r\x00") {
			return nil, errors.New("the become password contains a line break or NUL, which sudo cannot read")
		}
		cmd = "env LC_ALL=C /bin/sh -c " + shell.Join(becomeWrapper, script)
		stdin = append([]byte(b.Password), '\n')
		defer clear(stdin)
	}
	line, release, err := h.Hold(ctx, cmd, stdin)
	if err != nil {
		return nil, fmt.Errorf("take the host's run lock: %w", b.explain(user, err))
	}
	word, rest, _ := strings.Cut(line, " ")
	switch word {
	case "bg-lock-held":
		return release, nil
	case "bg-lock-busy":
		release()
		return nil, &HostLockedError{Holder: cleanNote(rest), Waited: wait}
	case "bg-lock-error":
		release()
		return nil, fmt.Errorf("take the host's run lock: %s", cleanNote(rest))
	}
	release()
	return nil, fmt.Errorf("take the host's run lock: unexpected answer %q", cleanNote(line))
}

// Hold runs cmd in a session of its own, writes stdin to it, and keeps its
// input open: cmd runs until release closes it (or the connection ends).
// It returns the first line cmd prints on stdout (at most 4 KiB; the rest
// of its output is read and dropped). A command that ends without printing
// a line is an *ExitError with its stderr.
func (c *Client) Hold(ctx context.Context, cmd string, stdin []byte) (line string, release func(), err error) {
	if err := ctx.Err(); err != nil {
		return "", nil, err
	}
	if err := c.ended(); err != nil {
		return "", nil, err
	}
	sess, err := c.newSession(ctx)
	if err != nil {
		return "", nil, err
	}
	in, err := sess.StdinPipe()
	if err != nil {
		sess.Close()
		return "", nil, err
	}
	out, err := sess.StdoutPipe()
	if err != nil {
		sess.Close()
		return "", nil, err
	}
	stderr := &capBuffer{max: maxStderr}
	sess.Stderr = stderr
	if err := c.start(ctx, sess, cmd, "start command"); err != nil {
		return "", nil, err
	}
	ended := make(chan error, 1)
	type first struct {
		line string
		err  error
	}
	got := make(chan first, 1)
	go func() {
		if len(stdin) > 0 {
			if _, err := in.Write(stdin); err != nil {
				got <- first{err: err}
				return
			}
		}
		br := bufio.NewReader(out)
		l, err := br.ReadSlice('\n')
		got <- first{strings.TrimSuffix(string(l), "\n"), err}
		_, _ = io.Copy(io.Discard, br)
	}()
	// Wait returns once the command has ended and its stderr is read
	// (stdout is a pipe, drained above).
	go func() { ended <- sess.Wait() }()
	stop := func() {
		_ = in.Close()
		t := time.NewTimer(cancelGrace)
		defer t.Stop()
		select {
		case <-ended:
		case <-c.done:
		case <-t.C:
		}
		_ = sess.Close()
	}
	select {
	case f := <-got:
		if f.err == nil {
			return f.line, stop, nil
		}
		// It ended (or said something unreadable): its status and stderr
		// say why.
		_ = in.Close()
		t := time.NewTimer(cancelGrace)
		defer t.Stop()
		var werr error
		select {
		case werr = <-ended:
		case <-t.C:
			werr = fmt.Errorf("no first line: %w", f.err)
		}
		_ = sess.Close()
		var exit *ssh.ExitError
		if errors.As(werr, &exit) {
			return "", nil, &ExitError{Code: exit.ExitStatus(), Signal: exit.Signal(), Stderr: stderr.String()}
		}
		if lost := c.lostSoon(); lost != nil {
			return "", nil, lost
		}
		if werr == nil {
			werr = fmt.Errorf("ended without a line: %w", f.err)
		}
		return "", nil, fmt.Errorf("run command: %w", werr)
	case <-ctx.Done():
		_ = sess.Signal(ssh.SIGTERM)
		_ = sess.Close()
		go c.closeUnlessEnded(ended)
		return "", nil, ctx.Err()
	}
}
