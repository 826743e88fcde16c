package lab

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
)

var errNotLinux = errors.New("lab needs Linux (mount, UTS and PID namespaces, overlayfs)")

// sshdPath is the machine's OpenSSH server, which every lab host runs.
const sshdPath = "/usr/sbin/sshd"

// Check reports whether this machine can run a lab: it needs root, unshare
// and nsenter (util-linux), /usr/sbin/sshd (openssh-server), sudo and
// ssh-keygen (openssh-client), and the right to create mount, UTS and PID
// namespaces. The error names everything missing and how to install it.
// The answer is computed once per process: the machine does not change.
func Check() error { return checkOnce() }

var checkOnce = sync.OnceValue(func() error {
	if runtime.GOOS != "linux" {
		return errNotLinux
	}
	return check(os.Geteuid(), exec.LookPath, probeNamespaces)
})

// check is Check with its view of the machine injected, for tests.
func check(euid int, lookPath func(string) (string, error), probe func() error) error {
	var missing []string
	if euid != 0 {
		missing = append(missing, "root (run as root, e.g. with sudo)")
	}
	var apt []string
	need := func(bin, pkg string) {
		if _, err := lookPath(bin); err != nil {
			missing = append(missing, fmt.Sprintf("%s (apt-get install %s)", bin, pkg))
			for _, p := range apt {
				if p == pkg {
					return
				}
			}
			apt = append(apt, pkg)
		}
	}
	need("unshare", "util-linux")
	need("nsenter", "util-linux")
	need(sshdPath, "openssh-server")
	need("sudo", "sudo")
	need("ssh-keygen", "openssh-client")
	if len(missing) == 0 {
		if err := probe(); err != nil {
			missing = append(missing, fmt.Sprintf("the right to create mount, UTS and PID namespaces (unshare failed: %v; run on a VM or a privileged container)", err))
		}
	}
	if len(missing) == 0 {
		return nil
	}
	msg := "lab needs " + strings.Join(missing, ", ")
	if len(apt) > 0 {
		msg += "; install with: apt-get install " + strings.Join(apt, " ")
	}
	return errors.New(msg)
}

// CheckKind is Check, and for a systemd kind also systemd-nspawn
// (systemd-container), and debootstrap when the kind's root is not cached.
func CheckKind(k Kind) error {
	if err := Check(); err != nil || !k.Systemd() {
		return err
	}
	return checkSystemd(k, exec.LookPath)
}

func checkSystemd(k Kind, lookPath func(string) (string, error)) error {
	var missing, apt []string
	need := func(bin, pkg string) {
		if _, err := lookPath(bin); err != nil {
			missing = append(missing, fmt.Sprintf("%s (apt-get install %s)", bin, pkg))
			apt = append(apt, pkg)
		}
	}
	need("systemd-nspawn", "systemd-container")
	if !rootCached(k) {
		need("debootstrap", "debootstrap")
	}
	if len(missing) == 0 {
		return nil
	}
	return fmt.Errorf("%s lab hosts need %s; install with: apt-get install %s",
		k, strings.Join(missing, ", "), strings.Join(apt, " "))
}
