package transport

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/breakglass/breakglass/internal/shell"
)

// ErrBecomeNeedsPassword: sudo wants a password and none was given.
var ErrBecomeNeedsPassword = errors.New("sudo needs a password: give the become password, or allow the user NOPASSWD")

// ErrBecomeBadPassword: sudo did not accept the become password.
var ErrBecomeBadPassword = errors.New("sudo rejected the become password")

// Become runs commands as root on a client logged in as another user, with
// sudo. A root client runs them directly.
//
// Without Password: sudo -n. With Password, the password travels only on
// stdin, in front of the command's own input, never on a command line; sudo
// gets exactly one attempt (sudo -S would otherwise take lines of the
// command's input as further attempts, and count them with pam_faillock).
// Commands run under sudo without LC_ALL, as they would otherwise; sudo
// itself runs with LC_ALL=C so its messages can be recognised.
//
// Without a password, commands run in one long-lived root shell (see
// Shell) when the client can start one: sudo runs once per Become, not
// once per command. Close ends that shell.
type Become struct {
	Client interface {
		Run(ctx context.Context, cmd string, stdin []byte) ([]byte, error)
		User() string
	}
	Password string

	mu      sync.Mutex
	shell   *Shell
	noShell bool // no shell could start: every command gets a session
}

// rootShell returns the shell commands run in, starting it when needed,
// or nil when commands must each get a session of their own.
func (b *Become) rootShell(ctx context.Context) *Shell {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.noShell || b.Password != "" {
		return nil
	}
	if b.shell != nil && !b.shell.ended() {
		return b.shell
	}
	c, ok := b.Client.(ShellStarter)
	if !ok {
		b.noShell = true
		return nil
	}
	start := "env LC_ALL=C sudo -n -- /bin/sh -s"
	if b.Client.User() == "root" {
		start = "env LC_ALL=C /bin/sh -s"
	}
	sh, err := c.StartShell(ctx, start)
	if err != nil {
		// The command's own session says why (sudo wants a password...).
		b.noShell = true
		return nil
	}
	b.shell = sh
	return sh
}

// ShellStarter is a client that can start a long-lived Shell (Client).
type ShellStarter interface {
	StartShell(ctx context.Context, cmd string) (*Shell, error)
}

// Close ends the root shell, if one runs.
func (b *Become) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.shell != nil {
		return b.shell.Close()
	}
	return nil
}

// becomeMarker starts the stderr line the password wrapper writes when sudo
// refuses, followed by sudo's own message.
const becomeMarker = "breakglass-become: "

// becomeWrapper is become.sh: it runs "$0" as root, reading the become
// password from the first line of stdin and leaving the rest for the
// command (sudo -v checks it with exactly one attempt); see the file.
//
//go:embed become.sh
var becomeWrapper string

// Run runs cmd as root, with stdin as its input.
func (b *Become) Run(ctx context.Context, cmd string, stdin []byte) ([]byte, error) {
	if sh := b.rootShell(ctx); sh != nil {
		out, err := sh.Run(ctx, "unset LC_ALL\n"+cmd, stdin)
		if !errors.Is(err, ErrShellInput) {
			return out, err
		}
	}
	user := b.Client.User()
	if user == "root" {
		return b.Client.Run(ctx, cmd, stdin)
	}
	inner := "unset LC_ALL\n" + cmd
	if b.Password == "" {
		out, err := b.Client.Run(ctx, "env LC_ALL=C sudo -n -- /bin/sh -c "+shell.Quote(inner), stdin)
		return out, b.explain(user, err)
	}
	if strings.ContainsAny(b.Password, "\n\r\x00") {
		return nil, errors.New("the become password contains a line break or NUL, which sudo cannot read")
	}
	input := make([]byte, 0, len(b.Password)+1+len(stdin))
	input = append(input, b.Password...)
	input = append(input, '\n')
	input = append(input, stdin...)
	out, err := b.Client.Run(ctx, "env LC_ALL=C /bin/sh -c "+shell.Join(becomeWrapper, inner), input)
	clear(input)
	return out, b.explain(user, err)
}

// User is the user commands run as.
func (b *Become) User() string { return "root" }

// explain turns sudo's own failures into errors saying what happened.
func (b *Become) explain(user string, err error) error {
	var exit *ExitError
	if !errors.As(err, &exit) {
		return err
	}
	if i := strings.Index(exit.Stderr, becomeMarker); i >= 0 {
		msg := exit.Stderr[i+len(becomeMarker):]
		if strings.Contains(msg, "incorrect password attempt") {
			return fmt.Errorf("become root as %s: %w (%s)", user, ErrBecomeBadPassword, lastLine(msg))
		}
		return fmt.Errorf("become root as %s: sudo refused: %s", user, lastLine(msg))
	}
	if exit.Code == 1 && hasLine(exit.Stderr, "sudo: a password is required") {
		return fmt.Errorf("become root as %s: %w", user, ErrBecomeNeedsPassword)
	}
	return err
}

func hasLine(s, line string) bool {
	for _, l := range strings.Split(s, "\n") {
		if strings.TrimSpace(l) == line {
			return true
		}
	}
	return false
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}
