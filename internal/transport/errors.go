package transport

import (
	"errors"
	"fmt"
	"strings"
)

// Stages of a dial, in DialError.Stage.
const (
	StageConnect   = "connect"   // TCP connection, or the jump host's channel to the next hop
	StageHostKey   = "hostkey"   // the server's host key was not accepted
	StageAuth      = "auth"      // no key was accepted for the user
	StageHandshake = "handshake" // SSH protocol negotiation failed
)

// DialError reports why a connection could not be made.
type DialError struct {
	Target string // inventory name of the host
	Hop    string // the jump host that failed, "" when it is the target itself
	Stage  string // StageConnect, StageHostKey, StageAuth or StageHandshake
	Err    error
}

func (e *DialError) Error() string {
	where := e.Target
	if e.Hop != "" {
		where += " (via jump host " + e.Hop + ")"
	}
	verb := map[string]string{
		StageConnect:   "connect",
		StageHostKey:   "host key",
		StageAuth:      "login",
		StageHandshake: "ssh handshake",
	}[e.Stage]
	if verb == "" {
		verb = e.Stage
	}
	return fmt.Sprintf("%s: %s: %v", where, verb, e.Err)
}

func (e *DialError) Unwrap() error { return e.Err }

// ErrConnectionLost is returned by Run when the SSH connection ended under it:
// the network failed, the server went away, or keepalives went unanswered.
var ErrConnectionLost = errors.New("connection lost")

// IsUnreachable reports whether err means the host could not be reached or
// logged into (any DialError) or the connection to it was lost, as opposed
// to a command failing on a reachable host.
func IsUnreachable(err error) bool {
	var de *DialError
	return errors.As(err, &de) || errors.Is(err, ErrConnectionLost)
}

// ErrHostKeyUnknown: the host is not in known_hosts and AcceptNew is off.
var ErrHostKeyUnknown = errors.New("unknown host")

// ErrHostKeyRevoked: the host offered a key marked @revoked in known_hosts.
var ErrHostKeyRevoked = errors.New("revoked host key")

// HostKeyChangedError: known_hosts (or an earlier connection of this run)
// has other keys for the host than the one it offered. It is never accepted.
type HostKeyChangedError struct {
	Host       string   // as in known_hosts: "name" or "[name]:port"
	Want       []string // fingerprints known for the host (SHA256:…)
	Got        string   // fingerprint offered (SHA256:…)
	GotType    string   // type of the key offered, e.g. ssh-ed25519
	KnownHosts string   // the known_hosts file
	Lines      []string // where the known keys are, "file:line", or "accepted earlier in this run"
}

func (e *HostKeyChangedError) Error() string {
	return fmt.Sprintf("host %s changed its key: it offers %s %s but %s has %s (%s); "+
		"this can be an attack; if the change is expected, remove the old key with: ssh-keygen -R '%s' -f %s",
		e.Host, e.GotType, e.Got, e.KnownHosts, strings.Join(e.Want, ", "), strings.Join(e.Lines, ", "),
		e.Host, e.KnownHosts)
}

// ExitError is a remote command that ran and failed.
type ExitError struct {
	Code   int    // exit status; 128+n when killed by signal n
	Signal string // the signal that killed it ("TERM", "KILL"), if any
	Stderr string // what it wrote on stderr (at most the first 64 KiB)
}

func (e *ExitError) Error() string {
	var msg string
	if e.Signal != "" {
		msg = "killed by signal " + e.Signal
	} else {
		msg = fmt.Sprintf("exit status %d", e.Code)
	}
	if s := firstLines(e.Stderr, 3, 400); s != "" {
		msg += ": " + s
	}
	return msg
}

// firstLines returns the first n non-empty lines of s, trimmed and joined
// with "; ", cut at max bytes.
func firstLines(s string, n, max int) string {
	var lines []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
			if len(lines) == n {
				break
			}
		}
	}
	out := strings.Join(lines, "; ")
	if len(out) > max {
		out = strings.ToValidUTF8(out[:max], "") + "…"
	}
	return out
}
