package tasks

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/breakglass/breakglass/internal/lab"
)

// socketActivate switches a systemd host to socket activation as Ubuntu
// ships it since 22.10: ssh.socket listens, ssh.service is not enabled.
func (x *sshdLab) socketActivate(t *testing.T) {
	t.Helper()
	x.sh(t, "systemctl disable --now ssh.service && systemctl enable --now ssh.socket", nil)
	if got := x.sh(t, "systemctl is-enabled ssh.service || :; systemctl is-active ssh.socket", nil); got != "disabled\nactive\n" {
		t.Fatalf("socket activation: %q", got)
	}
	x.mustLogin(t, 0, "admin")
}

// TestSSHDOnSocketActivatedHost applies a harmless change with the sshd
// module on a socket-activated host. Whatever happens, nobody loses access
// and the configuration matches the outcome. On Debian 12 the change is
// applied. On Debian 13 (OpenSSH 10.0p2) it usually is not, today:
// systemctl reload ssh.service makes sshd re-execute, and the new sshd
// cannot bind the address the socket unit holds ("fatal: Cannot bind any
// address"), so the reload fails and the module rolls back (systemd starts
// sshd again from the socket on the next connection). Now and then the
// reload works there; the test accepts both and logs which.
func TestSSHDOnSocketActivatedHost(t *testing.T) {
	for _, k := range lab.SystemdKinds() {
		t.Run(string(k), func(t *testing.T) {
			t.Parallel()
			x := newSystemdSSHDLab(t, k)
			x.socketActivate(t)
			before := x.sh(t, "ls -A /etc/ssh/sshd_config.d; cat /etc/ssh/sshd_config.d/*", nil)
			res, err := runSSHD(t, x, `{settings: {LogLevel: VERBOSE}}`)
			x.mustLogin(t, 0, "admin", "bg-ops1", "bg-ops2")
			if got := x.sh(t, "systemctl is-active ssh.socket; systemctl is-enabled ssh.service || :", nil); got != "active\ndisabled\n" {
				t.Errorf("after the run, ssh.socket and ssh.service: %q", got)
			}
			loglevel := strings.TrimSpace(x.sh(t, "sshd -T | grep -i '^loglevel'", nil))
			var rb *RollbackError
			switch {
			case err == nil:
				if loglevel != "loglevel VERBOSE" {
					t.Errorf("applied, but sshd -T says %q", loglevel)
				}
				if k == lab.Trixie {
					t.Logf("on %s the reload under socket activation worked this time", k)
				}
			case k == lab.Trixie && errors.As(err, &rb) && !rb.Pending && !rb.Failed && strings.Contains(err.Error(), "reloading sshd failed"):
				t.Logf("KNOWN GAP on %s: %v", k, err)
				if after := x.sh(t, "ls -A /etc/ssh/sshd_config.d; cat /etc/ssh/sshd_config.d/*", nil); after != before {
					t.Errorf("rolled back, but the config is not restored:\n%s\nwas:\n%s", after, before)
				}
			default:
				t.Errorf("res %+v err %v", res, err)
			}
			x.noLeftovers(t)

			// The emergency sshd gets its own port beside the socket.
			res2 := runSecondary(t, x, fmt.Sprintf(`{port: 2222, allow_users: [bg-ops1, bg-ops2], listen: %s}`, x.h.Addr))
			if !res2.Changed {
				t.Errorf("secondary_sshd changed nothing: %s", changesOf(res2))
			}
			x.mustLogin(t, 2222, "bg-ops1", "bg-ops2")
			x.mustLogin(t, 0, "admin")
		})
	}
}
