package audit

import (
	"context"
	"strings"
	"testing"

	"github.com/breakglass/breakglass/internal/lab"
)

// TestRecordedKinds replays the host query recorded on a trixie host
// (TestRecordHostKinds) through the checks, and checks what systemd,
// journald, logind and OpenSSH 10 change in the parsed facts.
func TestRecordedKinds(t *testing.T) {
	for _, tc := range []struct {
		name   string
		want   []string
		exempt bool // the kind's prelude ran: 127.0.0.1 exempt from penalties
	}{
		{"trixie-untouched", kindUntouched[lab.Trixie], false},
		{"trixie-clean", nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, env := recording(t, tc.name)
			res, err := New(Options{}).Run(context.Background(), &replay{out: out}, env)
			if err != nil {
				t.Fatal(err)
			}
			checkFindings(t, auditCase{name: tc.name, want: tc.want}, res.Findings)

			h := hostOf(t, tc.name)
			var bad []string
			if h.SSHDTestRC != 0 || h.PidFile != "/run/sshd.pid" || !h.Privsep["/run/sshd"] || h.SocketActivated || h.SocketListen != "" {
				bad = append(bad, "sshd")
			}
			if l := h.Listener; l == nil || l.PID <= 1 || l.Comm != "sshd" || l.Start < l.ProcessStart || l.Start != l.PidFileMTime {
				bad = append(bad, "listener")
			}
			if !strings.HasPrefix(h.SSHDVersion, "OpenSSH_10.0") || !strings.Contains(h.SSHDVersion, " openssh-server=1:10.0p1-") {
				bad = append(bad, "version")
			}
			if h.LimitsCount != "logind" || len(h.Logins) != 0 {
				bad = append(bad, "pam_limits count")
			}
			if h.NrOpen != 1048576 {
				bad = append(bad, "nr_open")
			}
			if h.PAMDir != "/lib/x86_64-linux-gnu/security" || !h.PAMModules["pam_limits.so"] || h.PAMFiles["sshd"] == nil {
				bad = append(bad, "pam")
			}
			if !h.SudoInstalled || h.VisudoRC != 0 || len(h.SudoDirs) != 1 || h.SudoDirs[0] != "/etc/sudoers.d" {
				bad = append(bad, "sudo")
			}
			order := "/etc/ssh/sshd_config /etc/ssh/sshd_config.d/lab.conf"
			if tc.exempt {
				order = "/etc/ssh/sshd_config /etc/ssh/sshd_config.d/01-lab-exempt.conf /etc/ssh/sshd_config.d/lab.conf"
			}
			if strings.Join(h.ConfigOrder, " ") != order {
				bad = append(bad, "config files "+strings.Join(h.ConfigOrder, " "))
			}
			admin, x := h.Users["admin"], h.Extras["admin"]
			if len(h.Users) != 1 || admin == nil || !admin.Exists || admin.Home != "/home/admin" || admin.SSHDKnown() != nil || len(admin.KeyFiles) == 0 {
				bad = append(bad, "admin")
			}
			if x == nil || !x.Exists || x.HomeKeys != 1 || x.SudoRC != 0 || x.SudoTrue != 0 {
				bad = append(bad, "admin's extras")
			}
			if got := admin.SSHD.Get("persourcepenaltyexemptlist"); (got == "127.0.0.1") != tc.exempt {
				bad = append(bad, "PerSourcePenaltyExemptList "+got)
			}
			if len(bad) > 0 {
				t.Errorf("%s: %s", tc.name, strings.Join(bad, "; "))
			}
		})
	}
}
