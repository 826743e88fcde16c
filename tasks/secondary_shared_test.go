package tasks

import (
	"strings"
	"testing"
)

// TestSecondarySharedSeesMatch: a Match block in the emergency sshd's
// config makes its settings depend on more than that file, and a setting
// inside one is as shared as a global one. The config reader used to stop
// at the first Match, so neither was reported.
func TestSecondarySharedSeesMatch(t *testing.T) {
	s := linked(t, mustSecondary(t, `{port: 2222, allow_users: [bg-ops1]}`), "bg-ops1")
	cfg := s.render([]string{"/etc/breakglass/hostkeys/ssh_host_ed25519_key"}) + "Match Address 10.0.0.0/8\n\tUsePAM yes\n"
	f := parseSecondaryT(t, secondaryFactsOut(secondaryFile(s.ConfigPath(), cfg)+"running 77\n"))
	p, err := s.planChanges(f, false)
	if err != nil {
		t.Fatal(err)
	}
	var shared []string
	for _, fd := range s.auditFindings(f, p, "h") {
		if fd.ID == FindingSecondShared {
			shared = append(shared, fd.Detail)
		}
	}
	got := strings.Join(shared, "\n")
	for _, want := range []string{"match Address 10.0.0.0/8): it has a Match block", "usepam yes): UsePAM yes"} {
		if !strings.Contains(got, want) {
			t.Errorf("second-path-shared findings lack %q:\n%s", want, got)
		}
	}
}
