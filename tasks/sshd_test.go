package tasks

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/breakglass/breakglass/internal/engine"
	"github.com/breakglass/breakglass/internal/lab"
	"github.com/breakglass/breakglass/internal/shell"
	"github.com/breakglass/breakglass/internal/wire"
)

// The golden files under testdata/sshd are rewritten with -update. The
// flag is shared with any other test of the package that defines it.
func init() {
	if flag.Lookup("update") == nil {
		flag.Bool("update", false, "rewrite golden files")
	}
}

func sshdGolden(t *testing.T, name, got string) {
	t.Helper()
	golden(t, filepath.Join("testdata", "sshd", name), got)
}

// sshdDecode decodes a task's arguments through the registry, as the
// playbook loader does.
func sshdDecode(t *testing.T, module, src string) (Module, error) {
	t.Helper()
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(src), &n); err != nil {
		t.Fatal(err)
	}
	f, ok := Lookup(module)
	if !ok {
		t.Fatalf("module %s is not registered", module)
	}
	return f("pb.yml", n.Content[0])
}

func mustSSHD(t *testing.T, src string) *SSHD {
	t.Helper()
	m, err := sshdDecode(t, "sshd", src)
	if err != nil {
		t.Fatal(err)
	}
	return m.(*SSHD)
}

// sshdRecorder is a fake host: it records every command with its stdin
// and answers with the first rule whose marker occurs in the script.
type sshdRecorder struct {
	mu    sync.Mutex
	rules []sshdRule
	calls []string // cmd + "\n" + stdin
}

type sshdRule struct {
	marker string
	out    string
	err    error
}

func (r *sshdRecorder) on(marker, out string, err error) *sshdRecorder {
	r.rules = append(r.rules, sshdRule{marker, out, err})
	return r
}

func (r *sshdRecorder) Run(ctx context.Context, cmd string, stdin []byte) ([]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	all := cmd + "\n" + string(stdin)
	r.calls = append(r.calls, all)
	// Facts gathered in one round trip: each part answered by its rule.
	if nonce, bodies, ok := wire.Parse(stdin); ok {
		var out strings.Builder
		for i, body := range bodies {
			rule, ok := r.answer(body)
			if !ok || rule.err != nil {
				out.WriteString(wire.Begun(nonce, i, ""))
				return []byte(out.String()), fmt.Errorf("recorder: no answer for part %d %q", i, engine.FirstLine(body))
			}
			out.WriteString(wire.Reply(nonce, i, rule.out, 0))
		}
		return []byte(out.String()), nil
	}
	if rule, ok := r.answer(all); ok {
		return []byte(rule.out), rule.err
	}
	return nil, fmt.Errorf("recorder: no answer for %q", engine.FirstLine(all))
}

// answer is the first rule whose marker occurs in script.
func (r *sshdRecorder) answer(script string) (sshdRule, bool) {
	for _, rule := range r.rules {
		if strings.Contains(script, rule.marker) {
			return rule, true
		}
	}
	return sshdRule{}, false
}

// steps names each call by its marker (the first rule that matched).
func (r *sshdRecorder) steps() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var s []string
	for _, c := range r.calls {
		name := "?"
		for _, rule := range r.rules {
			if strings.Contains(c, rule.marker) {
				name = rule.marker
				break
			}
		}
		s = append(s, name)
	}
	return s
}

// sshdFakeDialer answers logins: users in fail cannot log in.
type sshdFakeDialer struct {
	mu     sync.Mutex
	fail   map[string]bool
	seen   []string
	onDial func()
}

func (d *sshdFakeDialer) Login(ctx context.Context, user, keyFile string, p Path) (Runner, func() error, error) {
	d.mu.Lock()
	d.seen = append(d.seen, user+"/"+p.Name+"/"+keyFile)
	hook := d.onDial
	d.mu.Unlock()
	if hook != nil {
		hook()
	}
	if d.fail[user] {
		return nil, nil, errors.New("Permission denied (publickey)")
	}
	return sshdProbeRunner(user), func() error { return nil }, nil
}

type sshdProbeRunner string

func (u sshdProbeRunner) Run(ctx context.Context, cmd string, stdin []byte) ([]byte, error) {
	if cmd != engine.VerifyCommand {
		return nil, errors.New("unexpected command " + cmd)
	}
	return []byte(engine.ProbeOutputPrefix + " user=" + string(u) + " sudo=no\n"), nil
}

// sshdFactsOut renders facts script output for files (path → content).
func sshdFactsOut(main string, dropins map[string]string, extra string) string {
	var b strings.Builder
	b.WriteString("breakglass-sshd-facts 1\n")
	file := func(p, content string) {
		fmt.Fprintf(&b, "file 0 0 644 0 %s\n", p)
		enc := []byte(content)
		b.WriteString(sshdB64(enc) + "\nend\n")
	}
	file(SSHDConfigPath, main)
	b.WriteString("dropin-dir\n")
	for p, c := range dropins {
		file(SSHDDropInDir+"/"+p, c)
	}
	b.WriteString("pidfile /run/sshd.pid\n")
	b.WriteString("daemon 3 sshd: /usr/sbin/sshd -E /var/log/auth.log [listener] 0 of 10-100 startups \n")
	b.WriteString(extra)
	return b.String()
}

func sshdB64(b []byte) string {
	s := engine.Heredoc(b, "x", "")
	s = strings.TrimPrefix(s, "base64 -d >x <<'BREAKGLASS_EOF'\n")
	return strings.TrimSuffix(s, "\nBREAKGLASS_EOF")
}

const debianMain = `# Debian's default, shortened
Include /etc/ssh/sshd_config.d/*.conf
KbdInteractiveAuthentication no
UsePAM yes
X11Forwarding yes
PrintMotd no
AcceptEnv LANG LC_*
Subsystem	sftp	/usr/lib/openssh/sftp-server
`

func parseSSHDFactsT(t *testing.T, out string) *sshdFacts {
	t.Helper()
	v, err := parseSSHDFacts([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	return v.(*sshdFacts)
}

// --- decoding ---

func TestSSHDRegistered(t *testing.T) {
	for _, m := range []string{"sshd", "secondary_sshd"} {
		if _, ok := Lookup(m); !ok {
			t.Errorf("%s is not registered", m)
		}
	}
}

func TestSSHDDecode(t *testing.T) {
	s := mustSSHD(t, `{settings: {loglevel: VERBOSE, PASSWORDAUTHENTICATION: "no", PermitRootLogin: false, X11Forwarding: true, MaxAuthTries: 3, AllowUsers: [admin, bg-ops1], banner: " /etc/issue.net "}, file: 00-site.conf, revert_after: 30}`)
	want := []sshdSetting{
		{Keyword: "LogLevel", Value: "VERBOSE"}, {Keyword: "PasswordAuthentication", Value: "no"}, {Keyword: "PermitRootLogin", Value: "no"},
		{Keyword: "X11Forwarding", Value: "yes"}, {Keyword: "MaxAuthTries", Value: "3"}, {Keyword: "AllowUsers", Value: "admin bg-ops1"}, {Keyword: "Banner", Value: "/etc/issue.net"},
	}
	if fmt.Sprint(s.settings) != fmt.Sprint(want) {
		t.Errorf("settings %v, want %v", s.settings, want)
	}
	if s.file != "00-site.conf" || s.revertAfter != 30*time.Second {
		t.Errorf("file %q revert %v", s.file, s.revertAfter)
	}
	d := mustSSHD(t, `{settings: {LogLevel: INFO}}`)
	if d.file != SSHDDefaultDropIn || d.revertAfter != defaultSSHDRevertAfter {
		t.Errorf("defaults: file %q revert %v", d.file, d.revertAfter)
	}
}

func TestSSHDDecodeRejects(t *testing.T) {
	tests := []struct {
		name, src string
		want      []string // each must occur in the error
	}{
		{"unknown keyword", "settings:\n  LogLevell: VERBOSE\n", []string{"pb.yml:2:3:", `unknown sshd keyword "LogLevell"`}},
		{"newline in value", "settings:\n  Banner: \"/etc/issue\\nMatch all\"\n", []string{"pb.yml:2:11:", "control character", "one line"}},
		{"NUL in value", "settings:\n  Banner: \"a\\0b\"\n", []string{"pb.yml:2:11:", "control character"}},
		{"CR in value", "settings:\n  Banner: \"a\\rb\"\n", []string{"pb.yml:2:11:", "control character"}},
		{"Match", "settings:\n  Match: User bob\n", []string{"pb.yml:2:3:", "Match cannot be set here"}},
		{"Include", "settings:\n  include: /tmp/evil.conf\n", []string{"pb.yml:2:3:", "cannot be set here"}},
		{"PidFile", "settings:\n  PidFile: /run/x.pid\n", []string{"pb.yml:2:3:", "PidFile"}},
		{"deprecated", "settings:\n  Protocol: 2\n", []string{"pb.yml:2:3:", "deprecated"}},
		{"keyword with space", "settings:\n  \"LogLevel VERBOSE\\nMatch\": x\n", []string{"pb.yml:2:3:", "unknown sshd keyword"}},
		{"twice", "settings:\n  LogLevel: INFO\n  loglevel: VERBOSE\n", []string{"pb.yml:3:3:", "LogLevel is set twice (also at line 2)"}},
		{"empty value", "settings:\n  LogLevel: \"\"\n", []string{"pb.yml:2:13:", "empty value"}},
		{"null value", "settings:\n  LogLevel:\n", []string{"pb.yml:2:", "no value"}},
		{"mapping value", "settings:\n  LogLevel: {a: b}\n", []string{"pb.yml:2:13:", "want a string"}},
		{"comment value", "settings:\n  LogLevel: \"#x\"\n", []string{"pb.yml:2:13:", "comment"}},
		{"list with spaces", "settings:\n  AllowUsers: [\"a b\"]\n", []string{"pb.yml:2:15:", "contains a space"}},
		{"no settings", "{file: x.conf}\n", []string{"pb.yml:1:1:", "settings: want a mapping"}},
		{"empty settings", "settings: {}\n", []string{"pb.yml:1:11:", "settings: want a mapping"}},
		{"file traversal", "{settings: {LogLevel: INFO}, file: ../../etc/passwd}\n", []string{"pb.yml:1:36:", `file "../../etc/passwd"`}},
		{"file injection", "{settings: {LogLevel: INFO}, file: \"x;rm -rf /.conf\"}\n", []string{"pb.yml:1:36:", "file"}},
		{"file not .conf", "{settings: {LogLevel: INFO}, file: 00-breakglass}\n", []string{"pb.yml:1:36:", "ending in .conf"}},
		{"revert too short", "{settings: {LogLevel: INFO}, revert_after: 1}\n", []string{"pb.yml:1:44:", "revert_after 1: want 5 to 3600"}},
		{"unknown key", "{settings: {LogLevel: INFO}, revert: 1}\n", []string{"pb.yml:1:30:", `unknown key "revert"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := sshdDecode(t, "sshd", tt.src)
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestSSHDDecodeReportsAllErrors(t *testing.T) {
	_, err := sshdDecode(t, "sshd", "settings:\n  Foo: 1\n  Bar: 2\n  LogLevel: \"a\\nb\"\nfile: /x\nrevert_after: 0\n")
	if err == nil {
		t.Fatal("accepted")
	}
	for _, w := range []string{"pb.yml:2:3:", "pb.yml:3:3:", "pb.yml:4:13:", "pb.yml:5:7:", "pb.yml:6:15:"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error does not report %s:\n%v", w, err)
		}
	}
}

// --- rendering ---

func TestSSHDRenderDropIn(t *testing.T) {
	s := mustSSHD(t, `{settings: {PasswordAuthentication: "no", LogLevel: VERBOSE, AllowUsers: "admin bg-ops1"}}`)
	sshdGolden(t, "dropin.golden", s.renderDropIn())
}

func TestSSHDRenderBlock(t *testing.T) {
	s := mustSSHD(t, `{settings: {LogLevel: VERBOSE, PasswordAuthentication: "no"}}`)
	mainNoInclude := "Port 22\nLogLevel INFO\nSubsystem sftp /usr/lib/openssh/sftp-server"
	got, err := s.renderBlock(mainNoInclude)
	if err != nil {
		t.Fatal(err)
	}
	sshdGolden(t, "block.golden", got)
	again, err := s.renderBlock(got)
	if err != nil || again != got {
		t.Errorf("rendering the rendered file changes it (err %v):\n%s", err, again)
	}
	// A block elsewhere moves to the top with the new values.
	moved := "Port 22\n" + sshdBlockBegin + "\nLogLevel INFO\n" + sshdBlockEnd + "\nX11Forwarding no\n"
	got, err = s.renderBlock(moved)
	if err != nil {
		t.Fatal(err)
	}
	want := sshdBlockBegin + "\nLogLevel VERBOSE\nPasswordAuthentication no\n" + sshdBlockEnd + "\nPort 22\nX11Forwarding no\n"
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	if _, err := s.renderBlock("Port 22\n" + sshdBlockBegin + "\nLogLevel INFO\n"); err == nil || !strings.Contains(err.Error(), "no end marker") {
		t.Errorf("unterminated block: %v", err)
	}
}

// --- facts and plan ---

func TestParseSSHDFacts(t *testing.T) {
	f := parseSSHDFactsT(t, sshdFactsOut(debianMain, map[string]string{"lab.conf": "ListenAddress 127.0.0.9\n", "00-breakglass.conf": "LogLevel INFO\n"}, "systemd\nprivsep-missing\n"))
	if f.Main == nil || f.Main.Content != debianMain || !f.Systemd || !f.PrivsepMissing || !f.DropInDir {
		t.Fatalf("facts %+v", f)
	}
	if len(f.DropIns) != 2 || f.DropIns[0].Path != SSHDDropInDir+"/00-breakglass.conf" || f.DropIns[1].Content != "ListenAddress 127.0.0.9\n" {
		t.Errorf("drop-ins %+v", f.DropIns)
	}
	if strings.Join(f.DaemonArgs, " ") != "/usr/sbin/sshd -E /var/log/auth.log" || f.DaemonPID != 3 || f.PidFile != "/run/sshd.pid" {
		t.Errorf("daemon %d %q pidfile %q", f.DaemonPID, f.DaemonArgs, f.PidFile)
	}
	if _, err := parseSSHDFacts([]byte("sudo: a password is required\n")); err == nil {
		t.Error("garbage accepted")
	}
	if _, err := parseSSHDFacts([]byte("breakglass-sshd-facts 1\nfile 0 0 644 0 /etc/ssh/sshd_config\nTG9n\n")); err == nil {
		t.Error("truncated file accepted")
	}
}

func TestSSHDDaemonArgs(t *testing.T) {
	tests := map[string]string{
		"sshd: /usr/sbin/sshd -D [listener] 0 of 10-100 startups":                   "/usr/sbin/sshd -D",
		"sshd: /usr/sbin/sshd -E /var/log/auth.log [listener] 0 of 10-100 startups": "/usr/sbin/sshd -E /var/log/auth.log",
		"/usr/sbin/sshd -D ":                                      "/usr/sbin/sshd -D",
		"sshd: sshd [listener] 0 of 10-100 startups":              "", // relative: cannot re-exec
		"sshd: /usr/sbin/sshd -d [listener] 0 of 10-100 startups": "", // debug mode
		"/usr/bin/python3 x.py":                                   "",
		"":                                                        "",
	}
	for in, want := range tests {
		if got := strings.Join(sshdDaemonArgs(in), " "); got != want {
			t.Errorf("sshdDaemonArgs(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSSHDPlan(t *testing.T) {
	s := mustSSHD(t, `{settings: {LogLevel: VERBOSE, AllowUsers: admin}}`)
	want := s.renderDropIn()
	tests := []struct {
		name    string
		main    string
		dropins map[string]string
		extra   string
		path    string // "" when no change
		what    string
		err     string
	}{
		{name: "create drop-in", main: debianMain, path: s.Path(), what: "create /etc/ssh/sshd_config.d/00-breakglass.conf (LogLevel VERBOSE, AllowUsers admin)"},
		{name: "up to date", main: debianMain, dropins: map[string]string{"00-breakglass.conf": want}},
		{name: "update drop-in", main: debianMain, dropins: map[string]string{"00-breakglass.conf": "LogLevel INFO\n"}, path: s.Path(), what: "update /etc/ssh/sshd_config.d/00-breakglass.conf"},
		{name: "later drop-in loses", main: debianMain, dropins: map[string]string{"50-cloud-init.conf": "LogLevel INFO\n"}, path: s.Path(), what: "create"},
		{name: "earlier drop-in wins", main: debianMain, dropins: map[string]string{"0-site.conf": "loglevel=INFO\n"}, err: "LogLevel is set at /etc/ssh/sshd_config.d/0-site.conf:1; sshd reads that before"},
		{name: "earlier cumulative is fine", main: debianMain, dropins: map[string]string{"0-site.conf": "AllowUsers bob\n"}, path: s.Path(), what: "create"},
		{name: "earlier Match does not count", main: debianMain, dropins: map[string]string{"0-site.conf": "Match User bob\n  LogLevel INFO\n"}, path: s.Path(), what: "create"},
		{name: "hidden file is not read", main: debianMain, dropins: map[string]string{".0-site.conf": "LogLevel INFO\n"}, path: s.Path(), what: "create"},
		{name: "main above Include wins", main: "LogLevel QUIET\n" + debianMain, err: "LogLevel is set at /etc/ssh/sshd_config:1"},
		{name: "relative Include", main: "Include sshd_config.d/*.conf\n", path: s.Path(), what: "create"},
		{name: "no Include: block", main: "Port 22\nLogLevel INFO\n", path: SSHDConfigPath, what: "update the breakglass block at the top of /etc/ssh/sshd_config"},
		{name: "Include of another dir: block", main: "Include /etc/ssh/other.d/*.conf\n", path: SSHDConfigPath, what: "update the breakglass block"},
		{name: "Include inside Match: block", main: "Match User x\nInclude /etc/ssh/sshd_config.d/*.conf\n", path: SSHDConfigPath, what: "update the breakglass block"},
		{name: "symlink", main: debianMain, extra: "file 0 0 644 1 /etc/ssh/sshd_config.d/00-breakglass.conf\n" + sshdB64([]byte(want)) + "\nend\n", err: "is a symbolic link"},
		{name: "not a file", main: debianMain, extra: "other 0 /etc/ssh/sshd_config.d/00-breakglass.conf\n", err: "not a regular file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := parseSSHDFactsT(t, sshdFactsOut(tt.main, tt.dropins, tt.extra))
			p, err := s.planFile(f, true)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.path == "" {
				if len(p.changes) != 0 {
					t.Fatalf("changes %+v, want none", p.changes)
				}
				return
			}
			if len(p.changes) != 1 || p.path != tt.path || !strings.Contains(p.changes[0].What, tt.what) {
				t.Fatalf("plan %s %+v, want %s %q", p.path, p.changes, tt.path, tt.what)
			}
			if p.changes[0].After != p.want {
				t.Error("diff: After is not the new content")
			}
		})
	}
}

func TestSSHDPlanRepairsMode(t *testing.T) {
	s := mustSSHD(t, `{settings: {LogLevel: VERBOSE}}`)
	out := strings.Replace(sshdFactsOut(debianMain, nil, ""), "pidfile", "file 1000 0 666 0 /etc/ssh/sshd_config.d/00-breakglass.conf\n"+sshdB64([]byte(s.renderDropIn()))+"\nend\npidfile", 1)
	p, err := s.planFile(parseSSHDFactsT(t, out), false)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.changes) != 1 || p.changes[0].What != "chown root:root, chmod 0644 /etc/ssh/sshd_config.d/00-breakglass.conf (was 1000:0 0666)" || p.changes[0].Before != "" {
		t.Errorf("changes %+v", p.changes)
	}
}

// --- Run with a fake host ---

func sshdFakeHost(main string, install string) *sshdRecorder {
	return (&sshdRecorder{}).
		on("# breakglass sshd: facts", sshdFactsOut(main, nil, ""), nil).
		on(": begin (sshd", "file 0 absent\nstatus begun\n", nil).
		on(": arm the revert", "status armed\n| pid 42\n", nil).
		on("# breakglass sshd: install", install, nil).
		on("revert.sh commit", "claim commit\n", nil).
		on("revert.sh rollback", "claim rollback\nrestored ok\nafter ok\n", nil).
		on("revert.sh abort", "claim abort\nrestored ok\n", nil)
}

func sshdEnv(d LoginDialer) *Env {
	return &Env{Host: "web1", ControlUser: "admin", Dial: d, Facts: &Facts{},
		Logins: []Login{{User: "bg-ops1", KeyFile: "/keys/bg-ops1"}, {User: "bg-ops2", KeyFile: "/keys/bg-ops2"}}, MinWorking: 2}
}

func TestSSHDCheckModeSendsNoChange(t *testing.T) {
	r := sshdFakeHost(debianMain, "status reloaded\n")
	env := sshdEnv(&sshdFakeDialer{})
	env.Check, env.Diff = true, true
	res, err := runModule(context.Background(), r, env, mustSSHD(t, `{settings: {LogLevel: VERBOSE}}`))
	if err != nil {
		t.Fatal(err)
	}
	if !res.Changed || len(res.Changes) != 1 || res.Changes[0].After == "" {
		t.Errorf("result %+v", res)
	}
	if got := strings.Join(r.steps(), ","); got != "# breakglass sshd: facts" {
		t.Errorf("check mode ran %s", got)
	}
}

func TestSSHDNoChangeNoTransaction(t *testing.T) {
	s := mustSSHD(t, `{settings: {LogLevel: VERBOSE}}`)
	r := (&sshdRecorder{}).on("# breakglass sshd: facts", sshdFactsOut(debianMain, map[string]string{"00-breakglass.conf": s.renderDropIn()}, ""), nil)
	res, err := runModule(context.Background(), r, sshdEnv(&sshdFakeDialer{}), s)
	if err != nil || res.Changed {
		t.Fatalf("res %+v err %v", res, err)
	}
	if len(r.calls) != 1 {
		t.Errorf("ran %d commands, want the facts only", len(r.calls))
	}
}

func TestSSHDApplyOutcomes(t *testing.T) {
	tests := []struct {
		name       string
		install    string
		installErr error
		fail       map[string]bool
		steps      string
		err        []string
		pending    bool
	}{
		{name: "proven", install: "status reloaded\n",
			steps: "facts,begin,arm,install,commit"},
		{name: "sshd -t rejects", install: "status invalid\n| /etc/ssh/sshd_config.d/00-breakglass.conf line 3: Bad configuration option\n",
			steps: "facts,begin,arm,install,abort", err: []string{"rolled back: sshd -t rejected the new configuration", "Bad configuration option"}},
		{name: "reload fails", install: "status reload-failed\n| sshd exited on reload\n",
			steps: "facts,begin,arm,install,rollback", err: []string{"rolled back: reloading sshd failed: sshd exited on reload"}},
		{name: "control user locked out", install: "status reloaded\n", fail: map[string]bool{"admin": true},
			steps: "facts,begin,arm,install,rollback", err: []string{"rolled back: fresh logins failed", "the control user admin cannot log in"}},
		{name: "too few break-glass users", install: "status reloaded\n", fail: map[string]bool{"bg-ops2": true},
			steps: "facts,begin,arm,install,rollback", err: []string{"rolled back", "1 of 2 break-glass users can log in, fewer than min_working 2 (failing: bg-ops2"}},
		{name: "connection lost during install", installErr: errors.New("ssh: connection lost"),
			steps: "facts,begin,arm,install,rollback", err: []string{"rolled back: installing the new file did not finish"}},
	}
	short := map[string]string{
		"# breakglass sshd: facts": "facts", ": begin (sshd": "begin", ": arm the revert": "arm", "# breakglass sshd: install": "install",
		"revert.sh commit": "commit", "revert.sh rollback": "rollback", "revert.sh abort": "abort",
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := sshdFakeHost(debianMain, tt.install)
			if tt.installErr != nil {
				r.rules[3].err = tt.installErr
			}
			res, err := runModule(context.Background(), r, sshdEnv(&sshdFakeDialer{fail: tt.fail}), mustSSHD(t, `{settings: {AllowUsers: nobody}}`))
			var steps []string
			for _, s := range r.steps() {
				steps = append(steps, short[s])
			}
			if got := strings.Join(steps, ","); got != tt.steps {
				t.Errorf("steps %s, want %s", got, tt.steps)
			}
			if len(tt.err) == 0 {
				if err != nil || !res.Changed || res.RolledBack {
					t.Fatalf("res %+v err %v", res, err)
				}
				if !strings.Contains(res.Changes[0].What, "fresh logins ok: admin (control), bg-ops1, bg-ops2") {
					t.Errorf("change %q does not say what was proven", res.Changes[0].What)
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.err {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			var rb *engine.RollbackError
			if !errors.As(err, &rb) || !res.RolledBack || res.Changed {
				t.Errorf("res %+v, error %T: want a engine.RollbackError and RolledBack", res, err)
			}
		})
	}
}

func TestSSHDControlConnectionDies(t *testing.T) {
	// After the reload every command over the control connection fails:
	// the host must restore itself, and the error must say so.
	r := sshdFakeHost(debianMain, "status reloaded\n")
	dead := errors.New("ssh: connection reset")
	d := &sshdFakeDialer{fail: map[string]bool{"admin": true, "bg-ops1": true, "bg-ops2": true}}
	d.onDial = func() {
		r.mu.Lock()
		for i := range r.rules {
			r.rules[i].err = dead
		}
		r.mu.Unlock()
	}
	res, err := runModule(context.Background(), r, sshdEnv(d), mustSSHD(t, `{settings: {AllowUsers: nobody}, revert_after: 5}`))
	var rb *engine.RollbackError
	if !errors.As(err, &rb) || !rb.Pending || !res.RolledBack {
		t.Fatalf("err %v res %+v: want a pending rollback", err, res)
	}
	if !strings.Contains(err.Error(), "the revert armed on the host restores it by itself") || !errors.Is(err, engine.ErrAccessNotProven) {
		t.Errorf("error %q", err)
	}
}

func TestSSHDRevertFiredBeforeCommit(t *testing.T) {
	r := sshdFakeHost(debianMain, "status reloaded\n")
	r.rules[4].out = "claim fired\nrestored ok\nafter ok\n"
	res, err := runModule(context.Background(), r, sshdEnv(&sshdFakeDialer{}), mustSSHD(t, `{settings: {LogLevel: VERBOSE}, revert_after: 5}`))
	var rb *engine.RollbackError
	if !errors.As(err, &rb) || rb.Pending || rb.Failed || !res.RolledBack || res.Changed || !errors.Is(err, engine.ErrTxnFired) {
		t.Fatalf("res %+v err %v", res, err)
	}
	if !strings.Contains(err.Error(), "rolled back: the deadline passed and the revert armed on the host restored it, before the change was committed: raise revert_after (now 5s)") {
		t.Errorf("error %q", err)
	}
	r.rules[4].out = "claim fired\nrestored failed\n| restore /etc/ssh/sshd_config.d/00-breakglass.conf failed\n"
	res, err = runModule(context.Background(), r, sshdEnv(&sshdFakeDialer{}), mustSSHD(t, `{settings: {LogLevel: VERBOSE}, revert_after: 5}`))
	if !errors.As(err, &rb) || !rb.Failed || res.RolledBack || !strings.Contains(err.Error(), "RESTORING FAILED") {
		t.Errorf("failed restore: res %+v err %v", res, err)
	}
}

func TestSSHDRefusesWithoutLogins(t *testing.T) {
	r := sshdFakeHost(debianMain, "status reloaded\n")
	env := sshdEnv(nil)
	env.Dial = nil
	_, err := runModule(context.Background(), r, env, mustSSHD(t, `{settings: {LogLevel: VERBOSE}}`))
	if err == nil || !strings.Contains(err.Error(), "nothing changed") {
		t.Errorf("err %v", err)
	}
	if len(r.calls) != 1 {
		t.Errorf("ran %v", r.steps())
	}
}

func TestSSHDForgetsFacts(t *testing.T) {
	env := sshdEnv(&sshdFakeDialer{})
	env.Facts.Set(UserFactsKey("admin"), 1)
	env.Facts.Set("path:/etc", 1)
	r := sshdFakeHost(debianMain, "status reloaded\n")
	if _, err := runModule(context.Background(), r, env, mustSSHD(t, `{settings: {LogLevel: VERBOSE}}`)); err != nil {
		t.Fatal(err)
	}
	if _, ok := env.Facts.Get(UserFactsKey("admin")); ok {
		t.Error("user facts (with sshd's effective config) survived an sshd change")
	}
	if _, ok := env.Facts.Get(sshdFactsKey); ok {
		t.Error("sshd facts survived the change")
	}
	if _, ok := env.Facts.Get("path:/etc"); !ok {
		t.Error("unrelated facts were dropped")
	}
}

// TestSSHDScriptsParse runs sh -n on every script the module sends.
func TestSSHDScriptsParse(t *testing.T) {
	s := mustSSHD(t, `{settings: {LogLevel: VERBOSE}}`)
	f := parseSSHDFactsT(t, sshdFactsOut(debianMain, nil, ""))
	p, err := s.planFile(f, false)
	if err != nil {
		t.Fatal(err)
	}
	scripts := map[string][]byte{
		"facts":                         []byte(sshdQuery().Script),
		"install":                       sshdInstallScript(p),
		"after restore, no daemon args": []byte("f() {\n" + sshdAfterRestore(nil) + "}\n"),
		"after restore":                 []byte("f() {\n" + sshdAfterRestore([]string{"/usr/sbin/sshd", "-D"}) + "}\n"),
	}
	for name, sc := range scripts {
		sshdShellSyntax(t, name, sc)
	}
}

func sshdShellSyntax(t *testing.T, name string, script []byte) {
	t.Helper()
	for _, sh := range []string{"sh", "dash", "bash"} {
		if _, err := exec.LookPath(sh); err != nil {
			continue
		}
		cmd := exec.Command(sh, "-n")
		cmd.Stdin = strings.NewReader(string(script))
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("%s: %s -n: %v: %s", name, sh, err, out)
		}
	}
}

// --- on real hosts ---

// sshdLab is one lab host with two break-glass users, bg-ops1 and
// bg-ops2, who have their own keys (key-only accounts, like the user
// module makes them).
type sshdLab struct {
	l    *lab.Lab
	h    *lab.Host
	keys map[string]string // user → private key file; admin's is the lab's
}

func newSSHDLab(t *testing.T) *sshdLab {
	t.Helper()
	return newSSHDLabOf(t, lab.New(t, 1))
}

// newSSHDLabOf is newSSHDLab on l's first host, of any kind.
func newSSHDLabOf(t *testing.T, l *lab.Lab) *sshdLab {
	t.Helper()
	x := &sshdLab{l: l, h: l.Hosts[0], keys: map[string]string{"admin": l.AdminKey}}
	dir := t.TempDir()
	for _, u := range []string{"bg-ops1", "bg-ops2"} {
		key := filepath.Join(dir, u)
		if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", u, "-f", key).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen: %v: %s", err, out)
		}
		pub, err := os.ReadFile(key + ".pub")
		if err != nil {
			t.Fatal(err)
		}
		x.sh(t, fmt.Sprintf(`useradd -m -s /bin/bash -p '*' %[1]s
install -d -m 0700 -o %[1]s -g %[1]s /home/%[1]s/.ssh
cat > /home/%[1]s/.ssh/authorized_keys
chown %[1]s:%[1]s /home/%[1]s/.ssh/authorized_keys
chmod 0600 /home/%[1]s/.ssh/authorized_keys`, u), pub)
		x.keys[u] = key
	}
	return x
}

// sh runs a root shell script in the host and fails the test if it fails.
func (x *sshdLab) sh(t *testing.T, script string, stdin []byte) string {
	t.Helper()
	out, err := x.h.Exec(context.Background(), script, stdin)
	if err != nil {
		t.Fatalf("%s: %v", script, err)
	}
	return string(out)
}

// sshArgs is a plain OpenSSH client login: only the given key, no agent,
// no config, the host key checked against the lab's known_hosts (by
// address, also on other ports: the emergency sshd must present the same
// host key).
func (x *sshdLab) sshArgs(user string, port int) []string {
	if port == 0 {
		port = x.h.Port
	}
	return []string{"-F", "/dev/null",
		"-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none",
		"-o", "UserKnownHostsFile=" + x.l.KnownHosts, "-o", "GlobalKnownHostsFile=/dev/null",
		"-o", "StrictHostKeyChecking=yes", "-o", "HostKeyAlias=" + x.h.Addr,
		"-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR",
		"-p", fmt.Sprint(port), "-i", x.keys[user], "-l", user, x.h.Addr, "--"}
}

// login makes a real login with the plain ssh client and checks who it is.
func (x *sshdLab) login(user string, port int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ssh", append(x.sshArgs(user, port), "id -un")...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ssh %s@%s port %d: %v: %s", user, x.h.Addr, port, err, strings.TrimSpace(string(out)))
	}
	if got := strings.TrimSpace(string(out)); got != user {
		return fmt.Errorf("ssh %s: logged in as %q", user, got)
	}
	return nil
}

// dialer opens fresh logins with the ssh client: the test's LoginDialer.
func (x *sshdLab) dialer() LoginDialer { return sshdLabDialer{x} }

type sshdLabDialer struct{ x *sshdLab }

func (d sshdLabDialer) Login(ctx context.Context, user, keyFile string, p Path) (Runner, func() error, error) {
	if p.Jump != "" || p.Address != "" {
		return nil, nil, errors.New("test dialer: only direct and port paths")
	}
	if keyFile == "" {
		keyFile = d.x.keys["admin"] // the control connection's identity
	}
	x := *d.x
	x.keys = map[string]string{user: keyFile}
	return &sshdSSHRunner{x: &x, user: user, port: p.Port}, func() error { return nil }, nil
}

// sshdSSHRunner runs each command over a new ssh login; with sudo, as root
// through sudo -n (the control connection of a real run).
type sshdSSHRunner struct {
	x    *sshdLab
	user string
	port int
	sudo bool
}

func (r *sshdSSHRunner) Run(ctx context.Context, cmd string, stdin []byte) ([]byte, error) {
	if r.sudo {
		cmd = "sudo -n /bin/sh -c " + shell.Quote(cmd)
	}
	c := exec.CommandContext(ctx, "ssh", append(r.x.sshArgs(r.user, r.port), cmd)...)
	if stdin != nil {
		c.Stdin = strings.NewReader(string(stdin))
	}
	var stderr strings.Builder
	c.Stderr = &stderr
	out, err := c.Output()
	if err != nil {
		return out, fmt.Errorf("ssh %s: %v: %s", r.user, err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// env is a run's Env for the lab host: control user admin, the two
// break-glass users as verify_access would list them, min_working 2.
func (x *sshdLab) env() *Env {
	return &Env{Host: x.h.Name, ControlUser: "admin", Dial: x.dialer(), Facts: &Facts{},
		ClientAddr: "127.0.0.1", ServerAddr: x.h.Addr, ServerPort: x.h.Port,
		Logins: []Login{{User: "bg-ops1", KeyFile: x.keys["bg-ops1"]}, {User: "bg-ops2", KeyFile: x.keys["bg-ops2"]}}, MinWorking: 2}
}

// mustLogin fails the test unless every user logs in on port.
func (x *sshdLab) mustLogin(t *testing.T, port int, users ...string) {
	t.Helper()
	for _, u := range users {
		if err := x.login(u, port); err != nil {
			t.Error(err)
		}
	}
}

// noLeftovers fails the test if a revert is still running in the host.
func (x *sshdLab) noLeftovers(t *testing.T) {
	t.Helper()
	out := x.sh(t, `ps -eo pid,args | grep '[r]evert.sh' || :`, nil)
	if strings.TrimSpace(out) != "" {
		t.Errorf("revert processes left running:\n%s", out)
	}
}

func runSSHD(t *testing.T, x *sshdLab, src string) (*Result, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	return runModule(ctx, x.h.Runner(), x.env(), mustSSHD(t, src))
}

func TestSSHDOnHostApplies(t *testing.T) {
	t.Parallel()
	x := newSSHDLab(t)
	x.mustLogin(t, 0, "admin", "bg-ops1", "bg-ops2")
	const task = `{settings: {LogLevel: VERBOSE}}`
	res, err := runSSHD(t, x, task)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Changed || res.RolledBack || len(res.Changes) == 0 || !strings.Contains(res.Changes[0].What, "fresh logins ok: admin (control), bg-ops1, bg-ops2") {
		t.Errorf("result %+v", res)
	}
	if got := x.sh(t, "sshd -T | grep -i '^loglevel'", nil); strings.TrimSpace(got) != "loglevel VERBOSE" {
		t.Errorf("sshd -T: %q", got)
	}
	// The running daemon took it: VERBOSE logs the key of each login.
	x.mustLogin(t, 0, "admin", "bg-ops1", "bg-ops2")
	if log := x.sh(t, "cat /var/log/auth.log", nil); !strings.Contains(log, "Accepted key ED25519") {
		t.Errorf("the reloaded sshd does not log at VERBOSE:\n%s", log)
	}
	if got := x.sh(t, "stat -c '%U %a' /etc/ssh/sshd_config.d/00-breakglass.conf; ls /run/breakglass/txn/*/done | wc -l", nil); got != "root 644\n1\n" {
		t.Errorf("drop-in owner/mode and ended transactions: %q", got)
	}
	x.noLeftovers(t)

	res, err = runSSHD(t, x, task)
	if err != nil || res.Changed {
		t.Fatalf("second run: res %+v err %v, want no change", res, err)
	}
	if got := x.sh(t, "ls /run/breakglass/txn | wc -l", nil); got != "1\n" {
		t.Errorf("a run without a change started a transaction: %q", got)
	}
}

func TestSSHDOnHostRollsBackLockout(t *testing.T) {
	t.Parallel()
	x := newSSHDLab(t)
	before := x.sh(t, "cat /etc/ssh/sshd_config; ls -A /etc/ssh/sshd_config.d; cat /etc/ssh/sshd_config.d/*; stat -c %a /etc/ssh/sshd_config.d/*", nil)
	res, err := runSSHD(t, x, `{settings: {AllowUsers: nobody}}`)
	if err == nil || !strings.Contains(err.Error(), "rolled back") || res == nil || !res.RolledBack {
		t.Fatalf("res %+v err %v: want a rollback", res, err)
	}
	var rb *engine.RollbackError
	if !errors.As(err, &rb) || rb.Pending || rb.Failed || !errors.Is(err, engine.ErrAccessNotProven) {
		t.Errorf("error %v: want a completed rollback for lost access", err)
	}
	t.Logf("error: %v", err)
	if after := x.sh(t, "cat /etc/ssh/sshd_config; ls -A /etc/ssh/sshd_config.d; cat /etc/ssh/sshd_config.d/*; stat -c %a /etc/ssh/sshd_config.d/*", nil); after != before {
		t.Errorf("config not restored:\n%s\nwas:\n%s", after, before)
	}
	if got := x.sh(t, "sshd -T | grep -ci '^allowusers' || :", nil); strings.TrimSpace(got) != "0" {
		t.Errorf("AllowUsers still effective: %q", got)
	}
	x.mustLogin(t, 0, "admin", "bg-ops1", "bg-ops2")
	if got := x.sh(t, "cat /run/breakglass/txn/*/result", nil); !strings.Contains(got, "restored ok") || !strings.Contains(got, "after ok") {
		t.Errorf("transaction result: %q", got)
	}
	x.noLeftovers(t)
}

func TestSSHDOnHostRejectedBySSHDT(t *testing.T) {
	t.Parallel()
	x := newSSHDLab(t)
	res, err := runSSHD(t, x, `{settings: {MaxAuthTries: many}}`)
	if err == nil || !strings.Contains(err.Error(), "rolled back: sshd -t rejected the new configuration") || !strings.Contains(err.Error(), "MaxAuthTries") || !res.RolledBack {
		t.Fatalf("res %+v err %v", res, err)
	}
	if got := x.sh(t, "ls /etc/ssh/sshd_config.d; sshd -t && echo valid", nil); got != "lab.conf\nvalid\n" {
		t.Errorf("after: %q", got)
	}
	x.mustLogin(t, 0, "admin")
	x.noLeftovers(t)
}

// TestSSHDOnHostMainFileBlock: without an Include of sshd_config.d the
// settings go in a managed block at the top of sshd_config.
func TestSSHDOnHostMainFileBlock(t *testing.T) {
	t.Parallel()
	x := newSSHDLab(t)
	// The lab's own settings (address, host key) move into the main file.
	x.sh(t, `{ grep -v '^Include' /etc/ssh/sshd_config; cat /etc/ssh/sshd_config.d/lab.conf; } >/etc/ssh/sshd_config.new &&
		mv /etc/ssh/sshd_config.new /etc/ssh/sshd_config && rm /etc/ssh/sshd_config.d/lab.conf && sshd -t && kill -HUP $(cat /run/sshd.pid) && sleep 0.5`, nil)
	x.mustLogin(t, 0, "admin")
	orig := x.sh(t, "cat /etc/ssh/sshd_config", nil)

	res, err := runSSHD(t, x, `{settings: {LogLevel: VERBOSE}}`)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Changed || !strings.Contains(res.Changes[0].What, "update the breakglass block at the top of /etc/ssh/sshd_config") {
		t.Errorf("result %+v", res)
	}
	want := sshdBlockBegin + "\nLogLevel VERBOSE\n" + sshdBlockEnd + "\n" + orig
	if got := x.sh(t, "cat /etc/ssh/sshd_config", nil); got != want {
		t.Errorf("sshd_config:\n%s\nwant:\n%s", got, want)
	}
	if got := x.sh(t, "cat /etc/ssh/.sshd_config.breakglass.bak; sshd -T | grep '^loglevel'; ls /etc/ssh/sshd_config.d | wc -l", nil); got != orig+"loglevel VERBOSE\n0\n" {
		t.Errorf("backup, effective value, drop-ins: %q", got)
	}
	if res, err := runSSHD(t, x, `{settings: {LogLevel: VERBOSE}}`); err != nil || res.Changed {
		t.Errorf("second run: %+v %v", res, err)
	}

	res, err = runSSHD(t, x, `{settings: {LogLevel: VERBOSE, AllowUsers: nobody}}`)
	if err == nil || !res.RolledBack {
		t.Fatalf("lockout: res %+v err %v", res, err)
	}
	if got := x.sh(t, "cat /etc/ssh/sshd_config", nil); got != want {
		t.Errorf("sshd_config after the rollback:\n%s", got)
	}
	x.mustLogin(t, 0, "admin", "bg-ops1", "bg-ops2")
	x.noLeftovers(t)
}

// TestSSHDOnHostReloadKillsDaemon: a config sshd -t accepts but the daemon
// cannot run with (its port is taken): the reload kills the listener, and
// the rollback must start it again.
func TestSSHDOnHostReloadKillsDaemon(t *testing.T) {
	t.Parallel()
	x := newSSHDLab(t)
	ln, err := net.Listen("tcp", net.JoinHostPort(x.h.Addr, "2200"))
	if err != nil {
		t.Skipf("cannot take port 2200: %v", err)
	}
	defer ln.Close()
	res, err := runSSHD(t, x, `{settings: {Port: 2200}}`)
	if err == nil || !strings.Contains(err.Error(), "rolled back: reloading sshd failed") || !res.RolledBack {
		t.Fatalf("res %+v err %v", res, err)
	}
	t.Logf("error: %v", err)
	x.mustLogin(t, 0, "admin", "bg-ops1")
	if got := x.sh(t, "cat /run/breakglass/txn/*/result", nil); !strings.Contains(got, "sshd was not running: started it") {
		t.Errorf("transaction result: %q", got)
	}
	x.noLeftovers(t)
}

// TestSSHDOnHostControlConnectionDies: the control connection is an ssh
// login that stops working right after the reload (the change locks out
// admin, and the tool's side is gone): the task cannot restore anything, so
// the revert armed on the host must do it by itself.
func TestSSHDOnHostControlConnectionDies(t *testing.T) {
	t.Parallel()
	x := newSSHDLab(t)
	control := &sshdSSHRunner{x: x, user: "admin", sudo: true}
	env := x.env()
	res, err := runModule(context.Background(), control, env, mustSSHD(t, `{settings: {AllowUsers: nobody}, revert_after: 10}`))
	var rb *engine.RollbackError
	if !errors.As(err, &rb) || !res.RolledBack || rb.Failed {
		t.Fatalf("res %+v err %v: want a rollback", res, err)
	}
	// Either way the host restores itself: pending (the usual case), or,
	// on a very slow machine, the revert fired before the logins ended.
	if !rb.Pending && !errors.Is(err, engine.ErrTxnFired) {
		t.Errorf("error %v: want the rollback left to the armed revert", err)
	}
	t.Logf("error: %v", err)
	if rb.Pending {
		if err := x.login("admin", 0); err == nil {
			t.Fatal("admin can log in right after the reload: the change did not take effect, the test proves nothing")
		}
	}
	sshdWaitLogin(t, x, "admin", 25*time.Second)
	if got := x.sh(t, "ls /etc/ssh/sshd_config.d; cat /run/breakglass/txn/*/revert.log", nil); !strings.HasPrefix(got, "lab.conf\n") || !strings.Contains(got, "deadline passed: restoring") {
		t.Errorf("host after the deadline:\n%s", got)
	}
	x.mustLogin(t, 0, "bg-ops1", "bg-ops2")
	x.noLeftovers(t)
}

// sshdWaitLogin waits until user can log in again.
func sshdWaitLogin(t *testing.T, x *sshdLab, user string, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		err := x.login(user, 0)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still cannot log in after %v: %v\n%s", user, limit, err, x.sh(t, "ls -la /etc/ssh/sshd_config.d /run/breakglass/txn/*; cat /run/breakglass/txn/*/revert.log; tail -n 20 /var/log/auth.log", nil))
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// TestUserAbsentGuardOnLab: a removal that would leave fewer than
// min_working break-glass users able to log in is refused, on a real sshd,
// and the account stays; with min_working met by the others it goes.
func TestUserAbsentGuardOnLab(t *testing.T) {
	t.Parallel()
	x := newSSHDLab(t)
	remove := func(min int) (*Result, error) {
		env := x.env()
		env.MinWorking = min
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		u, err := decodeTask(t, NewUser, `{name: bg-ops1, state: absent}`)
		if err != nil {
			t.Fatal(err)
		}
		return runModule(ctx, x.h.Runner(), env, u)
	}
	// bg-ops2 locked out (its key gone): without bg-ops1 nobody is left.
	x.sh(t, "mv /home/bg-ops2/.ssh/authorized_keys /home/bg-ops2/.ssh/off", nil)
	if _, err := remove(1); err == nil || !strings.Contains(err.Error(), "not removed") || !strings.Contains(err.Error(), "0 of 1 break-glass users") {
		t.Fatalf("removal with no other working user: %v", err)
	}
	x.mustLogin(t, 0, "bg-ops1")
	x.sh(t, "mv /home/bg-ops2/.ssh/off /home/bg-ops2/.ssh/authorized_keys", nil)
	if _, err := remove(2); err == nil || !strings.Contains(err.Error(), "fewer than min_working 2") {
		t.Fatalf("removal below min_working 2: %v", err)
	}
	x.sh(t, "id bg-ops1", nil)
	res, err := remove(1)
	if err != nil || !res.Changed {
		t.Fatalf("removal with bg-ops2 still working: %+v %v", res, err)
	}
	if _, err := x.h.Exec(context.Background(), "id bg-ops1", nil); err == nil {
		t.Error("bg-ops1 still exists")
	}
	x.mustLogin(t, 0, "admin", "bg-ops2")
}

// TestAuthorizedKeyGuardOnLab: exclusive keys that would drop the key a
// break-glass user logs in with, on a real sshd: refused (file unchanged)
// while the other user is locked out or min_working needs both; kept when
// the other user still gets in.
func TestAuthorizedKeyGuardOnLab(t *testing.T) {
	t.Parallel()
	x := newSSHDLab(t)
	newKey := testKey(t, 42, "new")
	exclusive := func(min int) (*Result, error) {
		env := x.env()
		env.MinWorking = min
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		m, err := decodeTask(t, NewAuthorizedKey, fmt.Sprintf(`{user: bg-ops1, key: %q, exclusive: true}`, newKey))
		if err != nil {
			t.Fatal(err)
		}
		return runModule(ctx, x.h.Runner(), env, m)
	}
	const file = "/home/bg-ops1/.ssh/authorized_keys"
	before := x.sh(t, "cat "+file, nil)
	x.sh(t, "mv /home/bg-ops2/.ssh/authorized_keys /home/bg-ops2/.ssh/off", nil)
	if _, err := exclusive(1); err == nil || !strings.Contains(err.Error(), "keys not removed") || !strings.Contains(err.Error(), "0 of 1 break-glass users") {
		t.Fatalf("exclusive with no other working user: %v", err)
	}
	x.sh(t, "mv /home/bg-ops2/.ssh/off /home/bg-ops2/.ssh/authorized_keys", nil)
	if _, err := exclusive(2); err == nil || !strings.Contains(err.Error(), "fewer than min_working 2") {
		t.Fatalf("exclusive below min_working 2: %v", err)
	}
	if got := x.sh(t, "cat "+file, nil); got != before {
		t.Fatalf("a refused removal changed %s:\n%s", file, got)
	}
	x.mustLogin(t, 0, "bg-ops1")
	res, err := exclusive(1)
	if err != nil || !res.Changed {
		t.Fatalf("exclusive with bg-ops2 still working: %+v %v", res, err)
	}
	if got := x.sh(t, "cat "+file, nil); strings.TrimSpace(got) != newKey {
		t.Errorf("%s after exclusive:\n%s", file, got)
	}
	if err := x.login("bg-ops1", 0); err == nil {
		t.Error("bg-ops1 still logs in with the removed key")
	}
	x.mustLogin(t, 0, "admin", "bg-ops2")
}

// TestSSHDStartArgs: the after-restore step starts sshd again with its
// own command line, word for word (the header's set -- is data, quoted),
// in the background when -D keeps it in the foreground.
func TestSSHDStartArgs(t *testing.T) {
	if _, err := exec.LookPath("setsid"); err != nil {
		lab.Skip(t, "no setsid")
	}
	for _, fg := range []bool{false, true} {
		out := filepath.Join(t.TempDir(), "out")
		// A stand-in for sshd: it writes its arguments, one a line.
		args := []string{"/bin/sh", "-c", `printf '%s\n' "$@" >"$0.tmp" && mv "$0.tmp" "$0"`, out, "-E", "/var/log/a*.log", "it's $HOME"}
		if fg {
			args = append(args, "-D")
		}
		header, _, _ := strings.Cut(sshdAfterRestore(args), "\n")
		if !strings.HasPrefix(header, "set -- ") {
			t.Fatalf("after restore starts with %q, want its set -- header", header)
		}
		script := "f() {\n" + header + "\n" + sshdReloadFuncs + "bg_sshd_start \"$@\"\n}\nf\n"
		if b, err := exec.Command("sh", "-c", script).CombinedOutput(); err != nil {
			t.Fatalf("fg %v: %v: %s", fg, err, b)
		}
		want := strings.Join(args[4:], "\n") + "\n"
		var got []byte
		for i := 0; i < 100; i++ {
			if got, _ = os.ReadFile(out); got != nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if string(got) != want {
			t.Errorf("fg %v: sshd started with %q, want %q", fg, got, want)
		}
	}
}
