package transport

import (
	"strings"
	"testing"
)

// TestReviewSSHConnectionNoCommaInAddress: the client address goes into
// sshd -T -C "user=U,host=ADDR,addr=ADDR,..." (tasks.UserFactsQuery), a
// comma-separated spec in which a later key overrides an earlier one.
// netip.ParseAddr accepts any IPv6 zone ("fe80::1%a,user=root"), so a
// line printed by the control user's login shell (the parser takes the
// last matching line: an EXIT trap prints after the command) makes the
// user facts of every user be sshd's view of root's session.
func TestReviewSSHConnectionNoCommaInAddress(t *testing.T) {
	out := []byte("fe80::1%a,user=root 40000 fe80::2 22\n")
	if local, remote, ok := parseSSHConnection(out); ok && (strings.ContainsAny(local, ",=") || strings.ContainsAny(remote, ",=")) {
		t.Errorf("parseSSHConnection(%q) = %q, %q: an address that is not one", out, local, remote)
	}
}
