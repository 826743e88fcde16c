package audit

import (
	"crypto/rand"
	"crypto/rsa"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

func TestIncludesDropIn(t *testing.T) {
	for main, want := range map[string]bool{
		"Include /etc/ssh/sshd_config.d/*.conf\nUsePAM yes\n":   true,
		"include sshd_config.d/*.conf\n":                        true,
		"UsePAM yes\n":                                          false,
		"Match User x\nInclude /etc/ssh/sshd_config.d/*.conf\n": false, // a drop-in's lines would be in the Match
		"Include /etc/ssh/sshd_config.d/*.cfg\n":                false,
	} {
		if got := includes(map[string][]byte{mainSSHDConfig: []byte(main)}, dropIn); got != want {
			t.Errorf("includes(%q) = %v, want %v", main, got, want)
		}
	}
}

func TestSSHDErrorPlace(t *testing.T) {
	f, n := sshdErrorPlace([]string{"/etc/ssh/sshd_config.d/50-broken.conf: line 1: Bad configuration option: NoSuchKeyword"})
	if f != "/etc/ssh/sshd_config.d/50-broken.conf" || n != 1 {
		t.Errorf("got %s %d", f, n)
	}
	f, n = sshdErrorPlace([]string{"/etc/ssh/sshd_config line 12: unsupported option"})
	if f != "/etc/ssh/sshd_config" || n != 12 {
		t.Errorf("got %s %d", f, n)
	}
}

func TestPAMStack(t *testing.T) {
	files := map[string][]byte{
		"sshd": []byte(`@include common-auth
account    required     pam_nologin.so
account  required pam_access.so accessfile=/etc/security/ssh-access.conf # local rules
account include common-account
-session optional pam_systemd.so
session [success=ok ignore=ignore module_unknown=ignore default=bad] pam_selinux.so close
session [default=bad] pam_gone.so
`),
		"common-auth":    []byte("auth [success=1 default=ignore] pam_unix.so nullok\nauth requisite pam_deny.so\n"),
		"common-account": []byte("account [success=1 new_authtok_reqd=done default=ignore] pam_unix.so\nsession required pam_unix.so\n"),
	}
	st := pamStack(files, "sshd")
	var got []string
	for _, e := range st {
		got = append(got, e.Type+" "+e.base())
	}
	want := "auth pam_unix.so|auth pam_deny.so|account pam_nologin.so|account pam_access.so|account pam_unix.so|session pam_systemd.so|session pam_selinux.so|session pam_gone.so"
	if strings.Join(got, "|") != want {
		t.Errorf("stack %q, want %q", strings.Join(got, "|"), want)
	}
	if a := enforcing(st, "account", "pam_access.so"); len(a) != 1 || a[0].Args[0] != "accessfile=/etc/security/ssh-access.conf" || len(a[0].Args) != 1 {
		t.Errorf("pam_access entry %+v", a)
	}
	ign := map[string]bool{}
	for _, e := range st {
		ign[e.base()] = e.ignoresFailure(true)
	}
	for m, want := range map[string]bool{"pam_selinux.so": true, "pam_gone.so": false, "pam_nologin.so": false, "pam_systemd.so": true} {
		if ign[m] != want {
			t.Errorf("%s ignores a missing module: %v, want %v", m, ign[m], want)
		}
	}
}

func TestAccessRules(t *testing.T) {
	conf := []byte(`# comment
+:root:ALL
+:(wheel):10.0.0.0/8
-:ALL EXCEPT admin ops:ALL
+:bob:192.0.2.
-:ALL:ALL
`)
	rules := parseAccessRules("/etc/security/access.conf", conf, ":")
	tests := []struct {
		who     accessWho
		allowed bool
		line    int
	}{
		{accessWho{User: "root", From: "203.0.113.9"}, true, 2},
		{accessWho{User: "carol", Groups: []string{"wheel"}, From: "10.1.2.3"}, true, 3},
		{accessWho{User: "carol", Groups: []string{"wheel"}, From: "192.0.2.1"}, false, 4},
		{accessWho{User: "admin", From: "192.0.2.1"}, false, 6},
		{accessWho{User: "x", Groups: []string{"ops"}, From: "192.0.2.1"}, false, 6}, // a plain name matches a group too
		{accessWho{User: "x", Groups: []string{"ops"}, From: "192.0.2.1", NoDefGroup: true}, false, 4},
	}
	for _, tc := range tests {
		r, ok := accessVerdict(rules, tc.who)
		if ok != tc.allowed || r.Line != tc.line {
			t.Errorf("%+v: allowed %v by line %d, want %v by line %d", tc.who, ok, r.Line, tc.allowed, tc.line)
		}
	}
	if _, ok := accessVerdict(nil, accessWho{User: "a", From: "1.2.3.4"}); !ok {
		t.Error("no rule must allow")
	}
	w := accessWho{User: "a", From: "127.0.0.1"}
	for tok, want := range map[string]bool{"LOCAL": false, "localhost": true, "127.0.0.0/255.0.0.0": true, "127.": true, "127.0.0.1": true, ".example.com": false} {
		if got := w.fromMatch(tok); got != want {
			t.Errorf("fromMatch(%q) = %v, want %v", tok, got, want)
		}
	}
}

func TestSudoList(t *testing.T) {
	s := parseSudoList(strings.Split(`Matching Defaults entries for admin on lab01:
    env_reset, mail_badpass, secure_path=/usr/local/sbin\:/usr/bin, use_pty, requiretty

User admin may run the following commands on lab01:
    (ALL : ALL) NOPASSWD: ALL`, "\n"))
	if !s.Allowed || len(s.Rules) != 1 || !s.hasDefault("requiretty") || s.hasDefault("use") {
		t.Errorf("%+v", s)
	}
	s = parseSudoList([]string{"User bob is not allowed to run sudo on lab01."})
	if s.Allowed || !s.Denied {
		t.Errorf("%+v", s)
	}
	s = parseSudoList([]string{"sudo: sorry, you must have a tty to run sudo"})
	if !s.NeedsTTY {
		t.Errorf("%+v", s)
	}
}

func TestKeyJudgement(t *testing.T) {
	const now = 1795600000 // 2026-11-24
	e := keyEnv{Accepted: []string{"ssh-ed25519", "rsa-sha2-512", "rsa-sha2-256"}, RequiredRSA: 2048, ClientIP: "192.0.2.7", Now: now}
	ed := "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl u@h"
	rk, err := rsa.GenerateKey(rand.Reader, 1024) // below RequiredRSASize 2048
	if err != nil {
		t.Fatal(err)
	}
	spk, err := ssh.NewPublicKey(&rk.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	small := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(spk)))
	tests := []struct {
		line, id string
	}{
		{ed, ""},
		{`from="192.0.2.0/24" ` + ed, ""},
		{`from="!192.0.2.7,*" ` + ed, "key-options"},
		{`from="10.*" ` + ed, "key-options"},
		{`expiry-time="20991231" ` + ed, ""},
		{`expiry-time="20200101" ` + ed, "key-options"},
		{`expiry-time="202611231200Z" ` + ed, "key-options"},
		{`no-pty,command="true" ` + ed, ""},
		{`restrict,command="echo breakglass-probe user=$(id -un)" ` + ed, ""},
		{`command="/bin/false" ` + ed, "forced-command"},
		{`command="/usr/sbin/nologin" ` + ed, "forced-command"},
		{`command="exit 3" ` + ed, "forced-command"},
		{small, "key-algorithm"},
	}
	for _, tc := range tests {
		keys, parsed, opts, _ := keyFileLines([]byte(tc.line + "\n"))
		if len(keys) != 1 {
			t.Fatalf("%s: %d keys", tc.line, len(keys))
		}
		judgeKey(&keys[0], parsed[0], opts[0], e, "/f")
		if keys[0].ID != tc.id {
			t.Errorf("%s: %q (%s), want %q", tc.line, keys[0].ID, keys[0].Problem, tc.id)
		}
	}
	noEd := e
	noEd.Accepted = []string{"rsa-sha2-512"}
	keys, parsed, opts, _ := keyFileLines([]byte(ed))
	judgeKey(&keys[0], parsed[0], opts[0], noEd, "/f")
	if keys[0].ID != "key-algorithm" {
		t.Errorf("ed25519 not accepted: %q", keys[0].ID)
	}
	_, _, _, commented := keyFileLines([]byte("# " + ed + "\n#just a comment\n"))
	if commented != 1 {
		t.Errorf("commented keys: %d, want 1", commented)
	}
	if tm, err := parseExpiry("20261124", 3600); err != nil || !tm.Equal(time.Date(2026, 11, 23, 23, 0, 0, 0, time.UTC)) {
		t.Errorf("expiry in +0100: %v %v", tm, err)
	}
}

func TestPAMTimeRules(t *testing.T) {
	wed1000 := time.Date(2026, 12, 9, 10, 0, 0, 0, time.UTC) // a Wednesday
	tests := []struct {
		times string
		want  bool
	}{
		{"Al0000-2400", true},
		{"!Al0000-2400", false},
		{"Wk0800-1800", true},
		{"Wd0000-2400", false},
		{"Wk1100-1800", false},
		{"Wk2200-1100", true}, // over midnight
		{"AlWe0000-2400", false},
		{"Sa0000-2400|We0900-1100", true},
		{"Wk0000-2400&!We0000-2400", false},
	}
	for _, tc := range tests {
		if got := timesAllow(tc.times, wed1000); got != tc.want {
			t.Errorf("%s at %s: %v, want %v", tc.times, wed1000, got, tc.want)
		}
	}
	for _, tc := range []struct {
		list, s string
		want    bool
	}{{"*", "sshd", true}, {"sshd|login", "sshd", true}, {"!sshd", "sshd", false}, {"bob", "carol", false}, {"!bob", "carol", true}} {
		if got := timeList(tc.list, tc.s); got != tc.want {
			t.Errorf("list %q for %q: %v, want %v", tc.list, tc.s, got, tc.want)
		}
	}
}
