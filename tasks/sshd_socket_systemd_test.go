package tasks

import (
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
// module on a socket-activated host: it is applied and proven, nobody loses
// access, and the socket stays in charge. On Debian 13 (OpenSSH 10.0p2) a
// plain systemctl reload ssh.service made sshd re-execute and fail to bind
// the address the socket unit holds ("fatal: Cannot bind any address"), so
// the module restarts ssh.service under socket activation instead.
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
			if err != nil || loglevel != "loglevel VERBOSE" {
				t.Errorf("res %+v err %v; sshd -T says %q", res, err, loglevel)
				if after := x.sh(t, "ls -A /etc/ssh/sshd_config.d; cat /etc/ssh/sshd_config.d/*", nil); err != nil && after != before {
					t.Errorf("rolled back, but the config is not restored:\n%s\nwas:\n%s", after, before)
				}
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
