package transport

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/crypto/ssh"
)

// cancelGrace is how long a cancelled command's session may take to end
// before the whole connection is closed to end it.
const cancelGrace = 2 * time.Second

// maxStderr bounds the stderr kept for ExitError.
const maxStderr = 64 << 10

// Run runs cmd (a shell command line, run by the remote user's login shell)
// in a new session on the connection. stdin is written to the command and
// then closed. It returns what the command wrote on stdout, also when it
// fails. A non-zero exit is an *ExitError carrying stderr. At most
// MaxOutput bytes of stdout are read (or the smaller limit of
// WithOutputLimit): a command that writes more is ended, its session
// closed, and the error is an *OutputLimitError. Stderr is kept up to
// 64 KiB and the rest discarded.
//
// When ctx ends first, the command is sent SIGTERM, its session closed, and
// Run returns ctx's error at once; if the session does not end within a
// short grace period, the connection is closed too.
func (c *Client) Run(ctx context.Context, cmd string, stdin []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := c.ended(); err != nil {
		return nil, err
	}
	sess, err := c.newSession(ctx)
	if err != nil {
		return nil, err
	}
	limit := outputLimit(ctx)
	stdout := &limitBuffer{max: limit, over: make(chan struct{})}
	stderr := &capBuffer{max: maxStderr}
	sess.Stdout, sess.Stderr = stdout, stderr
	sess.Stdin = bytes.NewReader(stdin)
	if err := c.start(ctx, sess, cmd, "start command"); err != nil {
		return nil, err
	}
	done := make(chan error, 1)
	go func() { done <- sess.Wait() }()
	select {
	case err = <-done:
	case <-stdout.over:
		// Reading stopped at the limit: the command would block on a full
		// window for ever. End it; the connection stays usable.
		sess.Signal(ssh.SIGTERM)
		sess.Close()
		go c.closeUnlessEnded(done)
		return nil, &OutputLimitError{Limit: limit}
	case <-ctx.Done():
		sess.Signal(ssh.SIGTERM)
		sess.Close()
		go c.closeUnlessEnded(done)
		return nil, ctx.Err()
	}
	sess.Close()
	if stdout.full {
		return nil, &OutputLimitError{Limit: limit}
	}
	var exit *ssh.ExitError
	switch {
	case err == nil:
		return stdout.Bytes(), nil
	case errors.As(err, &exit):
		return stdout.Bytes(), &ExitError{Code: exit.ExitStatus(), Signal: exit.Signal(), Stderr: stderr.String()}
	}
	if lost := c.lostSoon(); lost != nil {
		return stdout.Bytes(), lost
	}
	var missing *ssh.ExitMissingError
	if errors.As(err, &missing) {
		return stdout.Bytes(), &ExitError{Code: -1, Stderr: stderr.String() + "\n(the server reported no exit status)"}
	}
	return stdout.Bytes(), fmt.Errorf("run command: %w", err)
}

// start starts cmd on sess, giving up when ctx ends: x/crypto waits for the
// server's answer to the exec request without a context. Then the session
// is closed, and the connection too if that is not answered within
// cancelGrace. On failure sess is closed and the error is ctx's, or what
// went wrong under the label what.
func (c *Client) start(ctx context.Context, sess *ssh.Session, cmd, what string) error {
	started := make(chan error, 1)
	stop := context.AfterFunc(ctx, func() {
		sess.Close()
		c.closeUnlessEnded(started)
	})
	err := sess.Start(cmd)
	started <- err
	switch {
	case !stop():
		return ctx.Err()
	case err != nil:
		sess.Close()
		return c.sessionErr(fmt.Errorf("%s: %w", what, err))
	}
	return nil
}

// newSession opens a session, giving up when ctx ends.
func (c *Client) newSession(ctx context.Context) (*ssh.Session, error) {
	type result struct {
		s   *ssh.Session
		err error
	}
	ch := make(chan result, 1)
	go func() {
		s, err := c.ssh.NewSession()
		ch <- result{s, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			return nil, c.sessionErr(fmt.Errorf("open session: %w", r.err))
		}
		return r.s, nil
	case <-ctx.Done():
		done := make(chan error, 1)
		go func() {
			r := <-ch
			if r.s != nil {
				r.s.Close()
			}
			done <- r.err
		}()
		go c.closeUnlessEnded(done)
		return nil, ctx.Err()
	}
}

// closeUnlessEnded closes the connection when done does not deliver within
// cancelGrace: a server that does not answer a session close will not answer
// anything else either.
func (c *Client) closeUnlessEnded(done <-chan error) {
	t := time.NewTimer(cancelGrace)
	defer t.Stop()
	select {
	case <-done:
	case <-c.done:
	case <-t.C:
		c.finish(fmt.Errorf("%w: a cancelled command did not end within %s", ErrConnectionLost, cancelGrace))
	}
}

// sessionErr turns a session failure on a dead connection into the reason
// the connection died. A refused channel (sshd's MaxSessions) is not that.
func (c *Client) sessionErr(err error) error {
	var refused *ssh.OpenChannelError
	if errors.As(err, &refused) {
		return err
	}
	if lost := c.lostSoon(); lost != nil {
		return lost
	}
	return err
}

// lostSoon waits briefly for the connection to be seen as ended: a session
// fails a moment before the connection's own reader notices the end.
func (c *Client) lostSoon() error {
	t := time.NewTimer(time.Second)
	defer t.Stop()
	select {
	case <-c.done:
	case <-t.C:
	}
	return c.ended()
}

// capBuffer keeps the first max bytes written to it and drops the rest.
type capBuffer struct {
	buf bytes.Buffer
	max int
}

func (b *capBuffer) Write(p []byte) (int, error) {
	if room := b.max - b.buf.Len(); room > 0 {
		if len(p) > room {
			b.buf.Write(p[:room])
		} else {
			b.buf.Write(p)
		}
	}
	return len(p), nil
}

func (b *capBuffer) String() string { return b.buf.String() }
