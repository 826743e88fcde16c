package lab

import (
	"fmt"
	"strings"
)

// Kind is what a lab host is.
type Kind string

const (
	// Namespace hosts are the default: a mount+UTS+PID namespace running
	// the machine's own sshd, no init; a hundred start in seconds.
	Namespace Kind = "namespace"
	// Bookworm hosts are systemd-nspawn containers booting systemd as
	// PID 1 from a Debian 12 root (OpenSSH 9.2).
	Bookworm Kind = "bookworm"
	// Trixie hosts are the same from a Debian 13 root (OpenSSH 10.0).
	Trixie Kind = "trixie"
)

// Kinds lists every kind, the default first.
func Kinds() []Kind { return []Kind{Namespace, Bookworm, Trixie} }

// SystemdKinds lists the kinds that boot systemd.
func SystemdKinds() []Kind { return []Kind{Bookworm, Trixie} }

// Systemd reports whether hosts of kind k boot systemd.
func (k Kind) Systemd() bool { return k == Bookworm || k == Trixie }

// ParseKind returns the kind named s; "" is Namespace.
func ParseKind(s string) (Kind, error) {
	if s == "" {
		return Namespace, nil
	}
	for _, k := range Kinds() {
		if string(k) == s {
			return k, nil
		}
	}
	names := make([]string, 0, 3)
	for _, k := range Kinds() {
		names = append(names, string(k))
	}
	return "", fmt.Errorf("unknown lab host kind %q: want one of %s", s, strings.Join(names, ", "))
}
