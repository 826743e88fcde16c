package tasks

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

func mustSecondary(t *testing.T, src string) *SecondarySSHD {
	t.Helper()
	m, err := sshdDecode(t, "secondary_sshd", src)
	if err != nil {
		t.Fatal(err)
	}
	return m.(*SecondarySSHD)
}

func TestSecondaryDecode(t *testing.T) {
	s := mustSecondary(t, `{port: 2222, allow_users: [bg-ops1, bg-ops2, bg-ops1]}`)
	if s.name != "breakglass" || s.port != 2222 || s.listen != "" || strings.Join(s.allowUsers, ",") != "bg-ops1,bg-ops2" {
		t.Errorf("%+v", s)
	}
	if s.ConfigPath() != "/etc/ssh/sshd_config_breakglass" || s.PidFile() != "/run/sshd-breakglass.pid" || s.Unit() != "breakglass-sshd.service" {
		t.Errorf("paths %s %s %s", s.ConfigPath(), s.PidFile(), s.Unit())
	}
	s = mustSecondary(t, `{port: 2022, allow_users: [ops], listen: "::1", name: rescue}`)
	if s.listen != "::1" || s.ConfigPath() != "/etc/ssh/sshd_config_rescue" || s.Unit() != "rescue-sshd.service" {
		t.Errorf("%+v", s)
	}
}

func TestSecondaryDecodeRejects(t *testing.T) {
	tests := []struct {
		name, src string
		want      []string
	}{
		{"no port", "allow_users: [a]\n", []string{"pb.yml:1:1:", "port is required"}},
		{"port range", "port: 70000\nallow_users: [a]\n", []string{"pb.yml:1:7:", "port 70000 out of range"}},
		{"port text", "port: ssh\nallow_users: [a]\n", []string{"pb.yml:1:"}},
		{"no users", "port: 2222\n", []string{"pb.yml:1:1:", "allow_users"}},
		{"user injection", "port: 2222\nallow_users: [ok, \"x\\nMatch all\", \"a b\"]\n", []string{"pb.yml:2:19:", "pb.yml:2:35:", "invalid user name"}},
		{"listen injection", "port: 2222\nallow_users: [a]\nlisten: \"0.0.0.0\\nPermitRootLogin yes\"\n", []string{"pb.yml:3:9:", "want an IP address"}},
		{"listen host name", "port: 2222\nallow_users: [a]\nlisten: example.com\n", []string{"pb.yml:3:9:", "want an IP address"}},
		{"name", "port: 2222\nallow_users: [a]\nname: ../../x\n", []string{"pb.yml:3:7:", `name "../../x"`}},
		{"unknown key", "port: 2222\nallow_users: [a]\nusers: [b]\n", []string{"pb.yml:3:1:", `unknown key "users"`}},
		{"users not a list", "port: 2222\nallow_users: a\n", []string{"pb.yml:2:14:", "expected a list"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := sshdDecode(t, "secondary_sshd", tt.src)
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

// secondaryFactsOut is what the facts script prints on a Debian host.
func secondaryFactsOut(extra string) string {
	return `breakglass-secondary-facts 1
sshd /usr/sbin/sshd
T listenaddress 127.0.0.5:22
T usepam yes
T hostkey /etc/ssh/ssh_host_rsa_key
T hostkey /etc/ssh/ssh_host_ecdsa_key
T hostkey /etc/ssh/ssh_host_ed25519_key
T authorizedkeysfile .ssh/authorized_keys .ssh/authorized_keys2
T subsystem sftp /usr/lib/openssh/sftp-server
exists /etc/ssh/ssh_host_ecdsa_key
exists /etc/ssh/ssh_host_ed25519_key
` + extra
}

func secondaryFile(p, content string) string {
	return fmt.Sprintf("file 0 0 644 0 %s\n%s\nend\n", p, sshdB64([]byte(content)))
}

func parseSecondaryT(t *testing.T, out string) *secondaryFacts {
	t.Helper()
	v, err := parseSecondaryFacts([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	return v.(*secondaryFacts)
}

func TestSecondaryRender(t *testing.T) {
	s := mustSecondary(t, `{port: 2222, allow_users: [bg-ops1, bg-ops2], listen: 0.0.0.0}`)
	m, err := s.mainConfig(parseSecondaryT(t, secondaryFactsOut("")))
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.render(m)
	sshdGolden(t, "secondary_config.golden", cfg)
	for _, l := range sshdParse(cfg) {
		if l.Keyword == "include" || l.Keyword == "match" {
			t.Errorf("the emergency config has %s at line %d", l.Keyword, l.Line)
		}
	}
	sshdGolden(t, "secondary_unit.golden", s.renderUnit("/usr/sbin/sshd"))
}

func TestSecondaryPlan(t *testing.T) {
	s := mustSecondary(t, `{port: 2222, allow_users: [bg-ops1, bg-ops2]}`)
	m, err := s.mainConfig(parseSecondaryT(t, secondaryFactsOut("")))
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.render(m)
	unit := s.renderUnit("/usr/sbin/sshd")
	current := secondaryFile(s.ConfigPath(), cfg)
	tests := []struct {
		name  string
		extra string
		want  []string // change descriptions, by prefix
		err   string
	}{
		{name: "fresh host", want: []string{"create /etc/ssh/sshd_config_breakglass (port 2222, users bg-ops1 bg-ops2)", "start /usr/sbin/sshd -f /etc/ssh/sshd_config_breakglass (not running)"}},
		{name: "running as wanted", extra: current + "running 77\n"},
		{name: "died", extra: current, want: []string{"start /usr/sbin/sshd"}},
		{name: "config changed", extra: secondaryFile(s.ConfigPath(), "Port 2222\n") + "running 77\n", want: []string{"update /etc/ssh/sshd_config_breakglass", "reload the emergency sshd (pid 77)"}},
		{name: "privsep dir missing", extra: "privsep-missing\n" + current + "running 77\n", want: []string{"create /run/sshd"}},
		{name: "port taken by the main sshd", extra: "T listenaddress 0.0.0.0:2222\n", err: "port 2222: the main sshd listens on 0.0.0.0:2222 already"},
		{name: "systemd, fresh", extra: "systemd\ndebian-ssh\nenabled disabled\nactive inactive\n", want: []string{"create /etc/ssh/sshd_config_breakglass", "create /etc/systemd/system/breakglass-sshd.service", "keep /run/sshd when ssh.service stops", "enable breakglass-sshd.service", "start breakglass-sshd.service (was inactive)"}},
		{name: "systemd, as wanted", extra: "systemd\ndebian-ssh\n" + current + secondaryFile(s.UnitPath(), unit) + secondaryFile(secondaryPrivsepDropIn, secondaryPrivsepConf) + "enabled enabled\nactive active\nrunning 9\n"},
		{name: "systemd, config changed", extra: "systemd\n" + secondaryFile(s.ConfigPath(), "x\n") + secondaryFile(s.UnitPath(), unit) + "enabled enabled\nactive active\nrunning 9\n", want: []string{"update /etc/ssh/sshd_config_breakglass", "reload breakglass-sshd.service"}},
		{name: "systemd, unit changed", extra: "systemd\n" + current + secondaryFile(s.UnitPath(), "x\n") + "enabled enabled\nactive active\nrunning 9\n", want: []string{"update /etc/systemd/system/breakglass-sshd.service", "restart breakglass-sshd.service"}},
		{name: "systemd, failed", extra: "systemd\n" + current + secondaryFile(s.UnitPath(), unit) + "enabled enabled\nactive failed\n", want: []string{"start breakglass-sshd.service (was failed)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := s.plan(parseSecondaryT(t, secondaryFactsOut(tt.extra)), true)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, c := range p.changes {
				got = append(got, c.What)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("changes %q, want %q", got, tt.want)
			}
			for i := range got {
				if !strings.HasPrefix(got[i], tt.want[i]) {
					t.Errorf("change %d %q, want %q…", i, got[i], tt.want[i])
				}
			}
			for _, script := range [][]byte{s.script(p, parseSecondaryT(t, secondaryFactsOut(tt.extra)))} {
				sshdShellSyntax(t, tt.name, script)
			}
		})
	}
}

// With the main config broken, sshd -T fails: the emergency config keeps
// its host keys and key file setting, so nothing changes and nothing
// breaks.
func TestSecondaryPlanMainBroken(t *testing.T) {
	s := mustSecondary(t, `{port: 2222, allow_users: [bg-ops1]}`)
	m, err := s.mainConfig(parseSecondaryT(t, secondaryFactsOut("")))
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.render(m)
	broken := strings.Replace(secondaryFactsOut(secondaryFile(s.ConfigPath(), cfg)+"running 5\n"), "T ", "X ", -1) + "sshd-T-failed\n| /etc/ssh/sshd_config line 3: Bad configuration option: Bogus\n"
	f := parseSecondaryT(t, broken)
	if !strings.Contains(f.TErr, "Bogus") {
		t.Errorf("TErr %q", f.TErr)
	}
	p, err := s.plan(f, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.changes) != 0 {
		t.Errorf("changes %+v, want none", p.changes)
	}
	// No config yet: sshd's default host keys that exist.
	p, err = s.plan(parseSecondaryT(t, strings.Replace(secondaryFactsOut(""), "T ", "X ", -1)+"sshd-T-failed\n"), false)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(p.config, "HostKey /etc/ssh/ssh_host_ecdsa_key\nHostKey /etc/ssh/ssh_host_ed25519_key\n") || !strings.Contains(p.fallbackNotes, "does not load") {
		t.Errorf("fallback config:\n%s\nnotes %q", p.config, p.fallbackNotes)
	}
}

func TestSecondaryCheckModeSendsNoChange(t *testing.T) {
	r := (&sshdRecorder{}).on("# breakglass secondary_sshd breakglass: facts", secondaryFactsOut(""), nil)
	env := &Env{Check: true, Facts: &Facts{}}
	res, err := mustSecondary(t, `{port: 2222, allow_users: [bg-ops1]}`).Run(context.Background(), r, env)
	if err != nil || !res.Changed || len(res.Changes) != 2 {
		t.Fatalf("res %+v err %v", res, err)
	}
	if len(r.calls) != 1 {
		t.Errorf("check mode ran %d commands", len(r.calls))
	}
}

func TestSecondaryApplyReportsInvalid(t *testing.T) {
	r := (&sshdRecorder{}).
		on("# breakglass secondary_sshd breakglass: facts", secondaryFactsOut(""), nil).
		on("# breakglass secondary_sshd breakglass: apply", "status invalid\n| line 5: Bad configuration option\n", nil)
	res, err := mustSecondary(t, `{port: 2222, allow_users: [bg-ops1]}`).Run(context.Background(), r, &Env{Facts: &Facts{}})
	if err == nil || !strings.Contains(err.Error(), "sshd -t rejected the new config; nothing was installed: line 5") || res.Changed {
		t.Errorf("res %+v err %v", res, err)
	}
}

// --- on real hosts ---

func runSecondary(t *testing.T, x *sshdLab, src string) *Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := mustSecondary(t, src).Run(ctx, x.h.Runner(), &Env{Host: x.h.Name, Facts: &Facts{}})
	if err != nil {
		t.Fatalf("secondary_sshd: %v", err)
	}
	return res
}

func changesOf(res *Result) string {
	var s []string
	for _, c := range res.Changes {
		s = append(s, c.What)
	}
	return strings.Join(s, "; ")
}

func TestSecondarySSHDOnHost(t *testing.T) {
	t.Parallel()
	x := newSSHDLab(t)
	// listen on the host's own address: lab hosts share the machine's
	// network, and other tests may use port 2222 on theirs.
	task := fmt.Sprintf(`{port: 2222, allow_users: [bg-ops1, bg-ops2], listen: %s}`, x.h.Addr)

	res := runSecondary(t, x, task)
	if !res.Changed || !strings.Contains(changesOf(res), "create /etc/ssh/sshd_config_breakglass") || !strings.Contains(changesOf(res), "start /usr/sbin/sshd -f /etc/ssh/sshd_config_breakglass") {
		t.Errorf("first run: %s", changesOf(res))
	}
	// Same host key as the main sshd: StrictHostKeyChecking against the
	// lab's known_hosts passes.
	x.mustLogin(t, 2222, "bg-ops1", "bg-ops2")
	if err := x.login("admin", 2222); err == nil {
		t.Error("admin logs in on the emergency port, which allows only the break-glass users")
	}
	if got := x.sh(t, "grep -ci '^[[:space:]]*include' /etc/ssh/sshd_config_breakglass || :; stat -c '%U %a' /etc/ssh/sshd_config_breakglass", nil); got != "0\nroot 644\n" {
		t.Errorf("config: %q", got)
	}
	if res := runSecondary(t, x, task); res.Changed {
		t.Errorf("second run changed: %s", changesOf(res))
	}

	// Break the main sshd: it refuses everyone; the emergency one does not care.
	x.sh(t, "echo 'AllowUsers nobody' > /etc/ssh/sshd_config.d/00-broken.conf && kill -HUP $(cat /run/sshd.pid) && sleep 0.5", nil)
	if err := x.login("bg-ops1", 0); err == nil {
		t.Fatal("the main sshd still lets bg-ops1 in: the test breaks nothing")
	}
	x.mustLogin(t, 2222, "bg-ops1", "bg-ops2")
	if res := runSecondary(t, x, task); res.Changed {
		t.Errorf("run with the main sshd broken changed: %s", changesOf(res))
	}

	// Killed: the next run starts it again.
	x.sh(t, `pid=$(cat /run/sshd-breakglass.pid) && kill "$pid" && while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done`, nil)
	if err := x.login("bg-ops1", 2222); err == nil {
		t.Fatal("the emergency sshd still answers after it was killed")
	}
	res = runSecondary(t, x, task)
	if !strings.Contains(changesOf(res), "start /usr/sbin/sshd -f /etc/ssh/sshd_config_breakglass (not running)") {
		t.Errorf("restart run: %s", changesOf(res))
	}
	x.mustLogin(t, 2222, "bg-ops1", "bg-ops2")

	// A main config sshd cannot even load (sshd -T fails): the emergency
	// config stays as it is, and a dead emergency sshd is still restarted.
	x.sh(t, `echo 'Bogus yes' > /etc/ssh/sshd_config.d/01-bogus.conf; ! sshd -t 2>/dev/null; pid=$(cat /run/sshd-breakglass.pid) && kill "$pid" && while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done`, nil)
	res = runSecondary(t, x, task)
	if got := changesOf(res); !strings.Contains(got, "start /usr/sbin/sshd") || strings.Contains(got, "update") {
		t.Errorf("run with an invalid main config: %s", got)
	}
	x.mustLogin(t, 2222, "bg-ops1", "bg-ops2")
	x.sh(t, "rm /etc/ssh/sshd_config.d/01-bogus.conf", nil)

	// A changed config is reloaded in place (same pid: sshd re-executes).
	pid := x.sh(t, "cat /run/sshd-breakglass.pid", nil)
	res = runSecondary(t, x, fmt.Sprintf(`{port: 2222, allow_users: [bg-ops1], listen: %s}`, x.h.Addr))
	if got := changesOf(res); !strings.Contains(got, "update /etc/ssh/sshd_config_breakglass") || !strings.Contains(got, "reload the emergency sshd") {
		t.Errorf("config change: %s", got)
	}
	if now := x.sh(t, "cat /run/sshd-breakglass.pid", nil); now != pid {
		t.Errorf("pid %s after the reload, was %s", now, pid)
	}
	x.mustLogin(t, 2222, "bg-ops1")
	if err := x.login("bg-ops2", 2222); err == nil {
		t.Error("bg-ops2 still logs in after being removed from allow_users")
	}
	if got := x.sh(t, "ls /etc/ssh/sshd_config_breakglass.breakglass-bak", nil); got == "" {
		t.Error("no backup of the previous config")
	}
}
