package audit

import (
	"strings"
	"testing"

	"github.com/breakglass/breakglass/tasks"
)

func TestSucceedIf(t *testing.T) {
	who := succeedSubject{name: "kate", uid: 1005, gid: 1005, shell: "/bin/bash", home: "/home/kate", groups: []string{"kate", "ops"}, known: true, rhost: "10.0.0.7"}
	for _, tc := range []struct {
		field, op, val string
		ok             bool
		err            bool
	}{
		{"user", "=~", "k*", true, false},
		{"user", "!~", "k*", false, false},
		{"USER", "glob", "?ate", true, false},
		{"user", "noglob", "[!k]*", true, false},
		{"home", "=~", "/home/*", true, false},
		{"shell", "=~", "*/nologin", false, false},
		{"rhost", "=~", "10.0.0.[0-9]", true, false},
		{"uid", ">=", "1000", true, false},
		{"uid", "lt", "0x400", true, false}, // strtoll base 0: 1024
		{"uid", "=", "1005", true, false},   // a string comparison
		{"uid", "eq", "abc", false, true},   // not a number: the module errs
		{"user", "in", "bob:kate", true, false},
		{"user", "notin", "bob:kate", false, false},
		{"user", "ingroup", "wheel:ops", true, false},
		{"user", "notingroup", "ops", false, false},
		{"service", "=", "sshd", true, false},
		{"tty", "=", "ssh", true, false},
		{"ruser", "=", "", true, false},
		{"colour", "=", "blue", false, true}, // unknown field: fails closed
		{"user", "~=", "k*", false, true},    // unknown operator
	} {
		ok, err := succeedIf(who, tc.field, tc.op, tc.val)
		if ok != tc.ok || (err != nil) != tc.err {
			t.Errorf("%s %s %s: %v, %v; want %v, error %v", tc.field, tc.op, tc.val, ok, err, tc.ok, tc.err)
		}
	}
	if _, err := succeedIf(who, "user", "innetgr", "admins"); err != errNotJudged {
		t.Errorf("innetgr: %v, want not judged", err)
	}
}

func TestFnmatch(t *testing.T) {
	for _, tc := range []struct {
		pat, s string
		ok     bool
	}{
		{"*", "/a/b", true}, // no FNM_PATHNAME: * crosses /
		{"a?c", "abc", true},
		{"a?c", "ac", false},
		{"[a-c]x", "bx", true},
		{"[!a-c]x", "bx", false},
		{`\*`, "*", true},
		{`\*`, "a", false},
		{"[", "[", true},
		{"a.b", "axb", false},
	} {
		if got := fnmatch(tc.pat, tc.s); got != tc.ok {
			t.Errorf("fnmatch(%q, %q) = %v", tc.pat, tc.s, got)
		}
	}
}

// TestLimitsPrecedence: the winning maxlogins line, as pam_limits picks it.
func TestLimitsPrecedence(t *testing.T) {
	uf := &tasks.UserFacts{Name: "ivan", UID: 1001, GID: 1001, Groups: []string{"ivan", "bglim"}}
	e := pamEntry{File: "/etc/pam.d/sshd", Line: 9, Type: "session", Control: "required", Module: "pam_limits.so"}
	for _, tc := range []struct {
		name, conf, extra string
		login             int
		rule              string // a piece of the winning line
		exempt            bool
	}{
		{"user beats group", "ivan - maxlogins 5\n@bglim - maxlogins 0\n", "", 5, "ivan", false},
		{"group beats *", "* - maxlogins 9\n@bglim hard maxlogins 0\n", "", 0, "@bglim", false},
		{"last among equals", "@bglim - maxlogins 2\n@bglim - maxlogins 3\n", "", 3, "maxlogins 3", false},
		{"uid range is a user line", "@bglim - maxlogins 0\n1000: - maxlogins 4\n", "", 4, "1000:", false},
		{"gid range", "@1001:1001 - maxlogins 1\n", "", 1, "@1001:1001", false},
		{"% counts all", "% - maxlogins 7\n", "", 7, "%", false},
		{"%group", "%bglim - maxlogins 6\n", "", 6, "%bglim", false},
		{"% not for maxsyslogins", "%bglim - maxsyslogins 1\n", "", -2, "", false},
		{"other user", "bob - maxlogins 0\n", "", -2, "", false},
		{"DOMAIN - lifts all", "@bglim - maxlogins 0\nivan -\n", "", 0, "@bglim", true},
		{"* - lifts nothing", "@bglim - maxlogins 0\n* -\n", "", 0, "@bglim", false},
		{"limits.d read after", "ivan - maxlogins 0\n", "ivan - maxlogins 2\n", 2, "limits.d", false},
		{"comment cut", "ivan - maxlogins 0 # none\n", "", 0, "ivan", false},
		{"unlimited", "ivan - maxlogins unlimited\n", "", -1, "ivan", false},
	} {
		h := &HostFacts{AccessConf: map[string][]byte{"/etc/security/limits.conf": []byte(tc.conf)}, GroupGID: map[string]int{"ivan": 1001, "bglim": 1500}}
		if tc.extra != "" {
			h.AccessConf["/etc/security/limits.d/10-x.conf"] = []byte(tc.extra)
		}
		v := (&checker{h: h}).limitsFor(e, uf)
		if v.login != tc.login || !strings.Contains(v.loginRule, tc.rule) || (v.exempt != "") != tc.exempt {
			t.Errorf("%s: login %d (%q), exempt %q; want %d (%q), exempt %v", tc.name, v.login, v.loginRule, v.exempt, tc.login, tc.rule, tc.exempt)
		}
	}
}

// TestLoginsCounted: the sessions open now against the limit, on a utmp
// and on a logind build.
func TestLoginsCounted(t *testing.T) {
	uf := &tasks.UserFacts{Name: "mia", UID: 1002, GID: 1002, Groups: []string{"mia"}}
	e := pamEntry{Module: "pam_limits.so"}
	v := limitsVerdict{login: 2, loginSrc: limitUser, loginRule: "x"}
	for _, tc := range []struct {
		name   string
		count  string
		logins []Login
		v      limitsVerdict
		refuse bool
	}{
		{"utmp room left", "utmp", []Login{{"mia", "utmp", true}}, v, false},
		{"utmp full", "utmp", []Login{{"mia", "utmp", true}, {"mia", "utmp", true}}, v, true},
		{"utmp stale entries ignored", "utmp", []Login{{"mia", "utmp", false}, {"mia", "utmp", false}}, v, false},
		{"utmp others ignored", "utmp", []Login{{"bob", "utmp", true}, {"bob", "utmp", true}}, v, false},
		{"maxsyslogins counts all", "utmp", []Login{{"bob", "utmp", true}, {"bob", "utmp", false}}, limitsVerdict{login: 2, sysLogins: true, loginRule: "x"}, true},
		{"logind limit 1 passes", "logind", []Login{{"mia", "user", true}, {"mia", "user", true}}, limitsVerdict{login: 1, loginRule: "x"}, false},
		{"logind user sessions", "logind", []Login{{"mia", "user", true}, {"mia", "manager", true}, {"mia", "user", true}}, v, true},
		{"logind greeter not counted", "logind", []Login{{"mia", "user", true}, {"mia", "greeter", true}}, v, false},
		{"not read", "", []Login{{"mia", "utmp", true}, {"mia", "utmp", true}}, v, false},
		{"%group counts its members", "utmp", []Login{{"bob", "utmp", true}, {"eve", "utmp", true}, {"bob", "utmp", true}}, limitsVerdict{login: 2, loginSrc: limitAllGroup, loginGroup: "ops", loginRule: "x"}, true},
		{"%group counts no one else", "utmp", []Login{{"eve", "utmp", true}, {"eve", "utmp", true}}, limitsVerdict{login: 2, loginSrc: limitAllGroup, loginGroup: "ops", loginRule: "x"}, false},
		{"% counts everyone", "utmp", []Login{{"eve", "utmp", true}, {"bob", "utmp", true}}, limitsVerdict{login: 2, loginSrc: limitAll, loginRule: "x"}, true},
		{"* counts the user's own", "utmp", []Login{{"eve", "utmp", true}, {"bob", "utmp", true}}, limitsVerdict{login: 2, loginSrc: limitDefault, loginRule: "x"}, false},
	} {
		c := &checker{h: &HostFacts{LimitsCount: tc.count, Logins: tc.logins,
			GroupGID: map[string]int{"ops": 50}, GroupMembers: map[int][]string{50: {"bob"}},
			UIDNames: map[int]string{1002: "mia", 1003: "bob", 1004: "eve"}, PrimaryGID: map[int]int{1002: 1002, 1003: 1003, 1004: 1004}}}
		if got := c.loginsRefused(e, uf, tc.v) != ""; got != tc.refuse {
			t.Errorf("%s: refused %v, want %v", tc.name, got, tc.refuse)
		}
	}
}

func TestCommandProgram(t *testing.T) {
	for cmd, want := range map[string]string{
		"/usr/local/bin/backup --now":             "/usr/local/bin/backup",
		"LANG=C exec /opt/x/run":                  "/opt/x/run",
		"rsync --server -vlogDtpre.iLsfxC . /srv": "rsync",
		"internal-sftp":                           "",
		tasks.ProbeCommand:                        "", // echo: the shell's own
		"true":                                    "",
		`"$SSH_ORIGINAL_COMMAND"`:                 "",
		"/bin/sh -c 'x'":                          "/bin/sh",
		"$HOME/bin/tool":                          "",
	} {
		if got := commandProgram(cmd); got != want {
			t.Errorf("commandProgram(%q) = %q, want %q", cmd, got, want)
		}
	}
}
