package transport

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

// Shell is one long-lived shell on a connection (a root shell, when
// started through sudo) that runs every command given to Run in a
// subshell of its own. After the first command, a round trip pays for no
// new session, login shell, sudo or shell on the host: on a small VM that
// is most of what a round trip costs.
//
// A command's input travels in a here-document behind it, and its end is
// marked on stdout (with its exit status) and on stderr by a line with a
// random nonce, so the streams stay framed whatever the command prints.
// Input that a here-document cannot carry exactly (a NUL byte, or no final
// newline) is refused with ErrShellInput: the caller runs such a command
// in a session of its own.
type Shell struct {
	mu    sync.Mutex
	c     *Client
	sess  *ssh.Session
	in    io.WriteCloser
	out   *bufio.Reader
	errs  *bufio.Reader
	nonce string
	dead  error
}

// ErrShellInput: the input cannot travel in a here-document.
var ErrShellInput = errors.New("input a here-document cannot carry exactly")

// StartShell runs cmd, a shell reading its script on stdin ("sudo -n --
// /bin/sh -s"), and waits until it answers. When it does not (sudo wants a
// password, the shell is missing), the error is an *ExitError with what it
// printed on stderr.
func (c *Client) StartShell(ctx context.Context, cmd string) (*Shell, error) {
	if err := c.ended(); err != nil {
		return nil, err
	}
	sess, err := c.newSession(ctx)
	if err != nil {
		return nil, err
	}
	s := &Shell{c: c, sess: sess}
	var perr error
	pipe := func(r io.Reader, err error) *bufio.Reader {
		if err != nil {
			perr = err
		}
		return bufio.NewReader(r)
	}
	s.in, err = sess.StdinPipe()
	if err != nil {
		sess.Close()
		return nil, err
	}
	s.out = pipe(sess.StdoutPipe())
	s.errs = pipe(sess.StderrPipe())
	if perr != nil {
		sess.Close()
		return nil, perr
	}
	var b [12]byte
	if _, err := rand.Read(b[:]); err != nil {
		sess.Close()
		return nil, err
	}
	s.nonce = hex.EncodeToString(b[:])
	if err := c.start(ctx, sess, cmd, "start shell"); err != nil {
		return nil, err
	}
	// The shell answers once it reads: "ready", or nothing when it never
	// started (then stderr says why, and the session's exit status).
	ready := make(chan error, 1)
	go func() {
		if _, err := io.WriteString(s.in, "printf '@@bg-ready "+s.nonce+"\\n'\n"); err != nil {
			ready <- err
			return
		}
		// One bufio buffer at most: a login shell that prints a
		// endless first line is not read into memory.
		line, err := s.out.ReadSlice('\n')
		if err == nil && string(line) != "@@bg-ready "+s.nonce+"\n" {
			err = fmt.Errorf("unexpected first line %q", firstLines(string(line), 1, 200))
		} else if errors.Is(err, bufio.ErrBufferFull) {
			err = fmt.Errorf("unexpected first line of over %d bytes", len(line))
		}
		ready <- err
	}()
	select {
	case err = <-ready:
	case <-ctx.Done():
		// The shell may still be waiting for its input (a slow link, sudo
		// stuck): nothing it says can be waited for.
		s.abandon(ctx.Err(), ready)
		return nil, ctx.Err()
	}
	if err != nil {
		return nil, s.startErr(ctx, err)
	}
	return s, nil
}

// startErr explains a shell that did not answer "ready": its stderr and
// exit status when it ended by itself (sudo wants a password). Its input is
// closed first, so a shell that is still running ends; what is left of its
// output is drained, so it is never blocked writing it. It waits at most
// cancelGrace, or until ctx ends, and then abandons the shell.
func (s *Shell) startErr(ctx context.Context, err error) error {
	_ = s.in.Close()
	var msg []byte // written before ended delivers
	ended := make(chan error, 1)
	go func() {
		go io.Copy(io.Discard, s.out)
		msg, _ = io.ReadAll(io.LimitReader(s.errs, maxStderr))
		_, _ = io.Copy(io.Discard, s.errs)
		ended <- s.sess.Wait()
	}()
	t := time.NewTimer(cancelGrace)
	defer t.Stop()
	select {
	case werr := <-ended:
		s.sess.Close()
		var exit *ssh.ExitError
		if errors.As(werr, &exit) {
			return &ExitError{Code: exit.ExitStatus(), Signal: exit.Signal(), Stderr: string(msg)}
		}
	case <-ctx.Done():
		s.abandon(ctx.Err(), ended)
		return ctx.Err()
	case <-t.C:
		s.abandon(err, ended)
	}
	if lost := s.c.ended(); lost != nil {
		return lost
	}
	return fmt.Errorf("start shell: %w", err)
}

// abandon kills a shell that is not answering, and has the connection
// closed too when ended, which delivers once the shell's streams are over,
// does not within cancelGrace (see closeUnlessEnded).
func (s *Shell) abandon(why error, ended <-chan error) {
	s.kill(why)
	go s.c.closeUnlessEnded(ended)
}

// Run runs cmd in a subshell, with stdin as its input, and returns its
// standard output; a non-zero exit is an *ExitError with its stderr, as
// Client.Run. When ctx ends first, the shell is closed. So it is when
// stdout goes over MaxOutput (or the limit of WithOutputLimit): the error
// is then an *OutputLimitError, and the next Run of a Become starts a new
// shell. Stderr is kept up to 64 KiB and the rest discarded.
func (s *Shell) Run(ctx context.Context, cmd string, stdin []byte) ([]byte, error) {
	if bytes.IndexByte(stdin, 0) >= 0 || (len(stdin) > 0 && stdin[len(stdin)-1] != '\n') {
		return nil, ErrShellInput
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dead != nil {
		return nil, s.dead
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	limit := outputLimit(ctx)
	delim := "BG_IN_" + s.nonce
	for bytes.Contains(stdin, []byte(delim)) {
		delim += "_"
	}
	var req bytes.Buffer
	fmt.Fprintf(&req, "(\n%s\n) <<'%s'\n", cmd, delim)
	req.Write(stdin)
	fmt.Fprintf(&req, "%s\nprintf '\\n@@bg-done %s %%d\\n' $?\nprintf '\\n@@bg-done %s\\n' >&2\n", delim, s.nonce, s.nonce)

	type result struct {
		out, errs []byte
		rc        int
		err       error
	}
	ch := make(chan result, 1)
	go func() {
		var r result
		if _, err := s.in.Write(req.Bytes()); err != nil {
			r.err = err
			ch <- r
			return
		}
		var wg sync.WaitGroup
		var errsErr error
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.errs, _, errsErr = readFramed(s.errs, "@@bg-done "+s.nonce, maxStderr, false)
		}()
		var tail string
		r.out, tail, r.err = readFramed(s.out, "@@bg-done "+s.nonce+" ", limit, true)
		if r.err != nil {
			// Nothing more is read from this shell (over the limit, or
			// its stream ended): close it, so that the stderr reader
			// ends too rather than wait for a mark that will not come.
			_ = s.sess.Close()
		}
		wg.Wait()
		if r.err == nil {
			r.err = errsErr
		}
		if r.err == nil {
			r.rc, r.err = strconv.Atoi(tail)
		}
		ch <- r
	}()
	select {
	case r := <-ch:
		var over *OutputLimitError
		if errors.As(r.err, &over) {
			s.kill(fmt.Errorf("root shell closed: %w", r.err))
			return nil, r.err
		}
		if r.err != nil {
			s.kill(r.err)
			if lost := s.c.lostSoon(); lost != nil {
				return r.out, lost
			}
			return r.out, fmt.Errorf("root shell: %w", r.err)
		}
		if r.rc != 0 {
			return r.out, &ExitError{Code: r.rc, Stderr: string(r.errs)}
		}
		return r.out, nil
	case <-ctx.Done():
		ended := make(chan error, 1)
		go func() { ended <- (<-ch).err }()
		s.abandon(fmt.Errorf("root shell closed: %w", ctx.Err()), ended)
		return nil, ctx.Err()
	}
}

// readFramed reads lines until one starts with mark and returns what came
// before it (without the newline printed in front of the mark), and the
// rest of the mark's line. It holds at most limit bytes of what came
// before: past that, it fails with an *OutputLimitError at once when
// failOver, and otherwise drops the rest (reading on to the mark, so the
// stream stays framed). It reads a line in pieces of at most the reader's
// buffer, so no line, however long, is held whole.
func readFramed(r *bufio.Reader, mark string, limit int, failOver bool) (body []byte, tail string, err error) {
	buf := &limitBuffer{max: limit}
	lineStart := true
	for {
		frag, err := r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			err = nil
		}
		if err != nil {
			return buf.Bytes(), "", err
		}
		complete := frag[len(frag)-1] == '\n'
		// The mark's own line is short: it is always one whole fragment.
		if lineStart && complete {
			if rest, ok := bytes.CutPrefix(frag, []byte(mark)); ok {
				b := buf.Bytes()
				if len(b) > 0 && b[len(b)-1] == '\n' {
					b = b[:len(b)-1]
				}
				return b, strings.TrimSpace(string(rest)), nil
			}
		}
		lineStart = complete
		if _, werr := buf.Write(frag); werr != nil && failOver {
			return nil, "", &OutputLimitError{Limit: limit}
		}
	}
}

// kill ends the shell: later Runs return why.
func (s *Shell) kill(why error) {
	if s.dead == nil {
		s.dead = why
	}
	_ = s.sess.Signal(ssh.SIGTERM)
	_ = s.in.Close()
	_ = s.sess.Close()
}

// ended reports whether the shell can run no more commands.
func (s *Shell) ended() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dead != nil
}

// Close ends the shell.
func (s *Shell) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dead == nil {
		s.dead = errors.New("root shell closed")
		_ = s.in.Close()
		_ = s.sess.Close()
	}
	return nil
}
