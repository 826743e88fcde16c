package transport

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestParseSSHConnection parses the answers to sshConnectionCommand
// recorded on lab hosts (testdata/sshconnection, see its README.md) and
// hand-made empty, cut-off and garbage ones, which must give no address
// rather than a wrong one.
func TestParseSSHConnection(t *testing.T) {
	const dest = "127.186.179.2:22" // the recorded host
	tests := []struct {
		name, file, out string
		local, remote   string // "" when no address may be read
	}{
		{name: "direct login", file: "direct.txt", local: "127.0.0.1", remote: dest},
		{name: "through a jump host", file: "jump.txt", local: "127.0.0.1", remote: dest},
		{name: "a login shell that prints first", file: "bashrc.txt", local: "127.0.0.1", remote: dest},
		{name: "IPv6", out: "2001:db8::7 50022 2001:db8::1 22\n", local: "2001:db8::7", remote: "[2001:db8::1]:22"},
		{name: "IPv6 link-local with a zone", out: "fe80::1%eth0 50022 fe80::2%eth0 2222\n", local: "fe80::1%eth0", remote: "[fe80::2%eth0]:2222"},
		{name: "no trailing newline", out: "10.0.0.5 40000 10.0.0.1 22", local: "10.0.0.5", remote: "10.0.0.1:22"},
		{name: "empty: sshd set none", out: "\n"},
		{name: "nothing at all", out: ""},
		{name: "cut off", out: "127.0.0.1 41226 127.186"},
		{name: "a sentence of four words", out: "Your password has expired\nchange it now\n"},
		{name: "four words that are not addresses", out: "this is not it\n"},
		{name: "bad port", out: "10.0.0.5 40000 10.0.0.1 ssh\n"},
		{name: "port out of range", out: "10.0.0.5 40000 10.0.0.1 70000\n"},
		{name: "five fields", out: "10.0.0.5 40000 10.0.0.1 22 x\n"},
		{name: "a host name, not an address", out: "client.example 40000 10.0.0.1 22\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := []byte(tt.out)
			if tt.file != "" {
				var err error
				if out, err = os.ReadFile(filepath.Join("testdata", "sshconnection", tt.file)); err != nil {
					t.Fatal(err)
				}
			}
			local, remote, ok := parseSSHConnection(out)
			if local != tt.local || remote != tt.remote || ok != (tt.local != "") {
				t.Errorf("parseSSHConnection(%q) = %q, %q, %v; want %q, %q", out, local, remote, ok, tt.local, tt.remote)
			}
		})
	}
}

// TestSSHConnectionNoCommaInAddress: the client address goes into
// sshd -T -C "user=U,host=ADDR,addr=ADDR,..." (tasks.UserFactsQuery), a
// comma-separated spec in which a later key overrides an earlier one.
// netip.ParseAddr accepts any IPv6 zone ("fe80::1%a,user=root"), so a
// line printed by the control user's login shell (the parser takes the
// last matching line: an EXIT trap prints after the command) makes the
// user facts of every user be sshd's view of root's session.
func TestSSHConnectionNoCommaInAddress(t *testing.T) {
	out := []byte("fe80::1%a,user=root 40000 fe80::2 22\n")
	if local, remote, ok := parseSSHConnection(out); ok && (strings.ContainsAny(local, ",=") || strings.ContainsAny(remote, ",=")) {
		t.Errorf("parseSSHConnection(%q) = %q, %q: an address that is not one", out, local, remote)
	}
}
