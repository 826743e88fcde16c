package tasks

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/breakglass/breakglass/internal/sshdconf"
	"github.com/breakglass/breakglass/internal/wire"
)

func mustSecondary(t *testing.T, src string) *SecondarySSHD {
	t.Helper()
	m, err := sshdDecode(t, "secondary_sshd", src)
	if err != nil {
		t.Fatal(err)
	}
	return m.(*SecondarySSHD)
}

// linked links s to authorized_key tasks giving each user one key
// (testKey i+1), as the CLI does before any host is contacted.
func linked(t *testing.T, s *SecondarySSHD, users ...string) *SecondarySSHD {
	t.Helper()
	var mods []Module
	for i, u := range users {
		mods = append(mods, mustAuthorizedKey(t, fmt.Sprintf("{user: %s, key: %q}", u, testKey(t, i+1, u))))
	}
	if err := s.LinkPlay(mods, 22); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSecondaryDecode(t *testing.T) {
	s := mustSecondary(t, `{port: 2222, allow_users: [bg-ops1, bg-ops2, bg-ops1]}`)
	if s.name != "breakglass" || s.port != 2222 || s.listen != "" || strings.Join(s.allowUsers, ",") != "bg-ops1,bg-ops2" || s.rootLogin || s.usePAM {
		t.Errorf("%+v", s)
	}
	if s.ConfigPath() != "/etc/ssh/sshd_config_breakglass" || s.PidFile() != "/run/sshd-breakglass.pid" || s.Unit() != "breakglass-sshd.service" ||
		s.KeyDir() != "/etc/breakglass/keys" || s.HostKeyDir() != "/etc/breakglass/hostkeys" {
		t.Errorf("paths %s %s %s %s %s", s.ConfigPath(), s.PidFile(), s.Unit(), s.KeyDir(), s.HostKeyDir())
	}
	s = mustSecondary(t, `{port: 2022, allow_users: [ops], listen: "::1", name: rescue, root_login: true}`)
	if s.listen != "::1" || s.ConfigPath() != "/etc/ssh/sshd_config_rescue" || s.Unit() != "rescue-sshd.service" || s.KeyDir() != "/etc/breakglass/sshd-rescue/keys" || !s.rootLogin {
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
		{"root as a user", "port: 2222\nallow_users: [ok, root]\n", []string{"pb.yml:2:19:", "root_login: true"}},
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

// The store holds exactly what the play's authorized_key tasks give each
// allowed user: options and probe restrictions carried over, a later task
// winning for the same key, state: absent removing it; root's file (with
// root_login) is the union.
func TestSecondaryLinkPlay(t *testing.T) {
	k1, k2, k3 := testKey(t, 1, "one"), testKey(t, 2, "two"), testKey(t, 3, "three")
	mods := []Module{
		mustAuthorizedKey(t, fmt.Sprintf(`{user: bg-ops1, keys: [%q, %q]}`, k1, k2)),
		mustAuthorizedKey(t, fmt.Sprintf(`{user: bg-ops1, key: %q, options: 'from="10.0.0.0/8"'}`, k1)),
		mustAuthorizedKey(t, fmt.Sprintf(`{user: bg-ops1, key: %q, state: absent}`, k2)),
		mustAuthorizedKey(t, fmt.Sprintf(`{user: bg-ops2, key: %q, probe: true}`, k3)),
		mustAuthorizedKey(t, fmt.Sprintf(`{user: someone-else, key: %q}`, k2)),
	}
	s := mustSecondary(t, `{port: 2222, allow_users: [bg-ops1, bg-ops2], root_login: true}`)
	if err := s.LinkPlay(mods, 22); err != nil {
		t.Fatal(err)
	}
	if got := s.store["bg-ops1"]; len(got) != 1 || got[0] != `from="10.0.0.0/8" `+k1 {
		t.Errorf("bg-ops1's store: %q", got)
	}
	if got := s.store["bg-ops2"]; len(got) != 1 || !strings.HasPrefix(got[0], `restrict,command="`+ProbeCommand+`" `) {
		t.Errorf("bg-ops2's store: %q", got)
	}
	root := s.storeContent("root")
	if !strings.Contains(root, `from="10.0.0.0/8" `+k1+"\n") || !strings.Contains(root, "restrict,command=") || strings.Contains(root, k2) {
		t.Errorf("root's store:\n%s", root)
	}

	// A user the play gives no key, and the main port: input errors at
	// their position.
	s = mustSecondary(t, "port: 22\nallow_users: [bg-ops1, nobody-here]\n")
	err := s.LinkPlay(mods, 22)
	if err == nil || !strings.Contains(err.Error(), "pb.yml:1:7: secondary_sshd: port 22 is the host's main SSH port") ||
		!strings.Contains(err.Error(), "pb.yml:2:24: secondary_sshd: allow_users: nobody-here gets no key") {
		t.Errorf("err %v", err)
	}
	if err := mustSecondary(t, `{port: 2200, allow_users: [bg-ops1]}`).LinkPlay(mods, 2200); err == nil {
		t.Error("the inventory's own port 2200 accepted as the emergency port")
	}
}

// secondaryFactsOut is what the facts script prints on a Debian host.
func secondaryFactsOut(extra string) string {
	return `breakglass-secondary-facts 1
sshd /usr/sbin/sshd
T listenaddress 127.0.0.5:22
T hostkey /etc/ssh/ssh_host_rsa_key
T hostkey /etc/ssh/ssh_host_ecdsa_key
T hostkey /etc/ssh/ssh_host_ed25519_key
exists /etc/ssh/ssh_host_ecdsa_key
hostkey differs /etc/ssh/ssh_host_ecdsa_key
exists /etc/ssh/ssh_host_ed25519_key
hostkey differs /etc/ssh/ssh_host_ed25519_key
` + extra
}

// secondaryConverged is what the facts print once the store, the copies
// and the config of s are in place.
func secondaryConverged(s *SecondarySSHD) string {
	var b strings.Builder
	b.WriteString("hostkey same /etc/ssh/ssh_host_ecdsa_key\nhostkey same /etc/ssh/ssh_host_ed25519_key\n")
	b.WriteString("dir 0 0 755 /etc/breakglass\ndir 0 0 755 /etc/breakglass/keys\ndir 0 0 700 /etc/breakglass/hostkeys\n")
	b.WriteString("copy 0 0 600 0 /etc/breakglass/hostkeys/ssh_host_ecdsa_key\ncopy 0 0 600 0 /etc/breakglass/hostkeys/ssh_host_ed25519_key\n")
	for _, u := range s.users() {
		b.WriteString("store\n" + secondaryFile(s.KeyDir()+"/"+u, s.storeContent(u)))
	}
	b.WriteString(secondaryFile(s.ConfigPath(), s.render([]string{"/etc/breakglass/hostkeys/ssh_host_ecdsa_key", "/etc/breakglass/hostkeys/ssh_host_ed25519_key"})))
	return b.String()
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
	s := linked(t, mustSecondary(t, `{port: 2222, allow_users: [bg-ops1, bg-ops2], listen: 0.0.0.0, root_login: true}`), "bg-ops1", "bg-ops2")
	p, err := s.planChanges(parseSecondaryT(t, secondaryFactsOut("")), false)
	if err != nil {
		t.Fatal(err)
	}
	cfg := p.config
	sshdGolden(t, "secondary_config.golden", cfg)
	for _, l := range sshdconf.ParseFile(s.ConfigPath(), cfg, "") {
		if l.Keyword == "include" || l.Keyword == "match" {
			t.Errorf("the emergency config has %s at line %d", l.Keyword, l.Line)
		}
	}
	// Nothing of the main path: no key file in a home, no PAM, no main
	// host key file.
	for _, bad := range []string{"%h", ".ssh/", "UsePAM yes", "/etc/ssh/ssh_host"} {
		if strings.Contains(cfg, bad) {
			t.Errorf("the emergency config holds %q:\n%s", bad, cfg)
		}
	}
	for _, want := range []string{"AuthorizedKeysFile /etc/breakglass/keys/%u\n", "UsePAM no\n", "PermitRootLogin prohibit-password\n", "AllowUsers bg-ops1 bg-ops2 root\n", "DisableForwarding yes\n"} {
		if !strings.Contains(cfg, want) {
			t.Errorf("the emergency config lacks %q", want)
		}
	}
	off := linked(t, mustSecondary(t, `{port: 2222, allow_users: [bg-ops1]}`), "bg-ops1")
	if cfg := off.render(p.hostKeys); !strings.Contains(cfg, "PermitRootLogin no\n") || !strings.Contains(cfg, "AllowUsers bg-ops1\n") {
		t.Errorf("root_login off:\n%s", cfg)
	}
	sshdGolden(t, "secondary_unit.golden", s.renderUnit("/usr/sbin/sshd"))
}

func TestSecondaryPlan(t *testing.T) {
	s := linked(t, mustSecondary(t, `{port: 2222, allow_users: [bg-ops1, bg-ops2]}`), "bg-ops1", "bg-ops2")
	unit := s.renderUnit("/usr/sbin/sshd")
	current := secondaryConverged(s)
	other := linked(t, mustSecondary(t, `{port: 2222, allow_users: [bg-ops1, bg-ops2]}`), "bg-ops2", "bg-ops1")
	fresh := []string{"create /etc/breakglass (root 0755)", "create /etc/breakglass/keys (root 0755)", "create /etc/breakglass/hostkeys (root 0700)",
		"copy the host key /etc/ssh/ssh_host_ecdsa_key to /etc/breakglass/hostkeys/ssh_host_ecdsa_key", "copy the host key /etc/ssh/ssh_host_ed25519_key",
		"create /etc/breakglass/keys/bg-ops1 (1 keys for bg-ops1 on port 2222)", "create /etc/breakglass/keys/bg-ops2", "create /etc/ssh/sshd_config_breakglass (port 2222, users bg-ops1 bg-ops2)"}
	tests := []struct {
		name  string
		extra string
		want  []string // change descriptions, by prefix
		err   string
		edit  func(string) string
	}{
		{name: "fresh host", want: append(fresh[:len(fresh):len(fresh)], "start /usr/sbin/sshd -f /etc/ssh/sshd_config_breakglass (not running)")},
		{name: "running as wanted", extra: current + "running 77\n"},
		{name: "died", extra: current, want: []string{"start /usr/sbin/sshd"}},
		{name: "config changed", extra: strings.Replace(current, sshdB64([]byte(s.render([]string{"/etc/breakglass/hostkeys/ssh_host_ecdsa_key", "/etc/breakglass/hostkeys/ssh_host_ed25519_key"}))), sshdB64([]byte("Port 2222\n")), 1) + "running 77\n",
			want: []string{"update /etc/ssh/sshd_config_breakglass", "reload the emergency sshd (pid 77)"}},
		{name: "main host key regenerated", extra: strings.Replace(current, "hostkey same /etc/ssh/ssh_host_ed25519_key", "hostkey differs /etc/ssh/ssh_host_ed25519_key", 1) + "running 77\n",
			want: []string{"copy the host key /etc/ssh/ssh_host_ed25519_key to /etc/breakglass/hostkeys/ssh_host_ed25519_key (the main host key changed", "reload the emergency sshd (pid 77)"}},
		{name: "copy with loose mode", extra: strings.Replace(current, "copy 0 0 600 0 /etc/breakglass/hostkeys/ssh_host_ecdsa_key", "copy 0 0 644 0 /etc/breakglass/hostkeys/ssh_host_ecdsa_key", 1) + "running 77\n",
			want: []string{"copy the host key /etc/ssh/ssh_host_ecdsa_key", "reload the emergency sshd"}},
		{name: "main host key deleted: the copy stays", extra: current + "running 77\n", edit: func(s string) string {
			return strings.NewReplacer("exists /etc/ssh/ssh_host_ed25519_key\n", "", "hostkey differs /etc/ssh/ssh_host_ed25519_key\n", "", "hostkey same /etc/ssh/ssh_host_ed25519_key\n", "").Replace(s)
		}},
		{name: "store keys changed", extra: current + other.storeFacts() + "running 77\n", want: []string{"update /etc/breakglass/keys/bg-ops1", "update /etc/breakglass/keys/bg-ops2"}},
		{name: "store: a stale user and a hand-edited mode", extra: current + "store\n" + secondaryFile(s.KeyDir()+"/old-user", "x\n") + "store\n" + strings.Replace(secondaryFile(s.KeyDir()+"/bg-ops1", s.storeContent("bg-ops1")), "file 0 0 644", "file 1000 0 664", 1) + "running 77\n",
			want: []string{"chown root:root, chmod 0644 /etc/breakglass/keys/bg-ops1 (was 1000:0 0664)", "remove /etc/breakglass/keys/old-user"}},
		{name: "store dir loosened", extra: strings.Replace(current, "dir 0 0 755 /etc/breakglass/keys", "dir 0 0 777 /etc/breakglass/keys", 1) + "running 77\n", want: []string{"chown root:root, chmod 0755 /etc/breakglass/keys (was 0:0 0777)"}},
		{name: "store dir a link", extra: "dir link /etc/breakglass/keys\n", err: "/etc/breakglass/keys is not a directory"},
		{name: "privsep dir missing", extra: "privsep-missing\n" + current + "running 77\n", want: []string{"create /run/sshd"}},
		{name: "port taken by the main sshd", extra: "T listenaddress 0.0.0.0:2222\n", err: "port 2222: the main sshd listens on 0.0.0.0:2222 already"},
		{name: "no host key", extra: "", err: ""},
		{name: "host certificate: copied and presented", extra: current + "T hostcertificate /etc/ssh/host-ed25519.cert\nexists /etc/ssh/host-ed25519.cert\nhostkey differs /etc/ssh/host-ed25519.cert\nrunning 77\n",
			want: []string{"copy the host certificate /etc/ssh/host-ed25519.cert to /etc/breakglass/hostkeys/host-ed25519.cert-cert.pub", "update /etc/ssh/sshd_config_breakglass", "reload the emergency sshd (pid 77)"}},
		{name: "host certificate in place", extra: strings.Replace(current, sshdB64([]byte(s.render([]string{"/etc/breakglass/hostkeys/ssh_host_ecdsa_key", "/etc/breakglass/hostkeys/ssh_host_ed25519_key"}))),
			sshdB64([]byte(s.render([]string{"/etc/breakglass/hostkeys/ssh_host_ecdsa_key", "/etc/breakglass/hostkeys/ssh_host_ed25519_key"}, "/etc/breakglass/hostkeys/ssh_host_ed25519_key-cert.pub"))), 1) +
			"T hostcertificate /etc/ssh/ssh_host_ed25519_key-cert.pub\nexists /etc/ssh/ssh_host_ed25519_key-cert.pub\nhostkey same /etc/ssh/ssh_host_ed25519_key-cert.pub\ncopy 0 0 644 0 /etc/breakglass/hostkeys/ssh_host_ed25519_key-cert.pub\nrunning 77\n"},
		{name: "sysv-rc, fresh", extra: "pid1 init\nsysv-rc\ncron /usr/sbin/cron\n", want: append(fresh[:len(fresh):len(fresh)], "create /etc/init.d/breakglass-sshd (starts the emergency sshd at boot)", "update-rc.d breakglass-sshd defaults: start it at boot in runlevels 2-5 (no systemd here; PID 1 is init)", "start /usr/sbin/sshd")},
		{name: "sysv-rc, as wanted", extra: "pid1 init\nsysv-rc\n" + current + strings.Replace(secondaryFile(s.InitPath(), s.renderInit("/usr/sbin/sshd")), "file 0 0 644", "file 0 0 755", 1) + rcLinks(s, "2", "3", "4", "5") + "running 77\n"},
		{name: "sysv-rc, disabled in runlevel 3", extra: "pid1 init\nsysv-rc\n" + current + strings.Replace(secondaryFile(s.InitPath(), s.renderInit("/usr/sbin/sshd")), "file 0 0 644", "file 0 0 755", 1) + rcLinks(s, "2", "4", "5") + "rc-link /etc/rc3.d/K01breakglass-sshd ../init.d/breakglass-sshd\n" + "running 77\n",
			want: []string{"update-rc.d breakglass-sshd defaults"}},
		{name: "sysv-rc, script edited and world-writable", extra: "pid1 init\nsysv-rc\n" + current + strings.Replace(secondaryFile(s.InitPath(), "#!/bin/sh\n"), "file 0 0 644", "file 0 0 777", 1) + rcLinks(s, "2", "3", "4", "5") + "running 77\n",
			want: []string{"update /etc/init.d/breakglass-sshd (starts the emergency sshd at boot)"}},
		{name: "cron only, fresh", extra: "pid1 tini\ncron /usr/sbin/cron\n" + current + "running 77\n", want: []string{"create /etc/cron.d/breakglass-sshd (starts the emergency sshd at boot)"}},
		{name: "cron only, as wanted", extra: "pid1 tini\ncron /usr/sbin/cron\n" + current + secondaryFile(s.CronPath(), s.renderCron("/usr/sbin/sshd")) + "running 77\n"},
		{name: "cron entry a link", extra: "pid1 tini\ncron /usr/sbin/cron\n" + current + "other 1 /etc/cron.d/breakglass-sshd\n", err: "/etc/cron.d/breakglass-sshd is not a regular file"},
		{name: "systemd, fresh", extra: "systemd\ndebian-ssh\nenabled disabled\nactive inactive\n", want: append(fresh[:len(fresh):len(fresh)], "create /etc/systemd/system/breakglass-sshd.service", "keep /run/sshd when ssh.service stops", "enable breakglass-sshd.service", "start breakglass-sshd.service (was inactive)")},
		{name: "systemd, as wanted", extra: "systemd\ndebian-ssh\n" + current + secondaryFile(s.UnitPath(), unit) + secondaryFile(secondaryPrivsepDropIn, secondaryPrivsepConf) + "enabled enabled\nactive active\nrunning 9\n"},
		{name: "systemd, config changed", extra: "systemd\n" + strings.Replace(current, sshdB64([]byte(s.render([]string{"/etc/breakglass/hostkeys/ssh_host_ecdsa_key", "/etc/breakglass/hostkeys/ssh_host_ed25519_key"}))), sshdB64([]byte("x\n")), 1) + secondaryFile(s.UnitPath(), unit) + "enabled enabled\nactive active\nrunning 9\n", want: []string{"update /etc/ssh/sshd_config_breakglass", "reload breakglass-sshd.service"}},
		{name: "systemd, unit changed", extra: "systemd\n" + current + secondaryFile(s.UnitPath(), "x\n") + "enabled enabled\nactive active\nrunning 9\n", want: []string{"update /etc/systemd/system/breakglass-sshd.service", "restart breakglass-sshd.service"}},
		{name: "systemd, failed", extra: "systemd\n" + current + secondaryFile(s.UnitPath(), unit) + "enabled enabled\nactive failed\n", want: []string{"start breakglass-sshd.service (was failed)"}},
	}
	for _, tt := range tests {
		if tt.name == "no host key" {
			continue
		}
		t.Run(tt.name, func(t *testing.T) {
			out := secondaryFactsOut(tt.extra)
			if tt.edit != nil {
				out = tt.edit(out)
			}
			p, err := s.planChanges(parseSecondaryT(t, out), true)
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
			sshdShellSyntax(t, tt.name, s.script(p, parseSecondaryT(t, out)))
		})
	}
	// No host key at all: nothing to serve.
	if _, err := s.planChanges(parseSecondaryT(t, "breakglass-secondary-facts 1\nT hostkey /etc/ssh/ssh_host_rsa_key\n"), false); err == nil || !strings.Contains(err.Error(), "no host key") {
		t.Errorf("no host key: %v", err)
	}
	// Not linked: a programming error, never a store without keys.
	if _, err := mustSecondary(t, `{port: 2222, allow_users: [bg-ops1]}`).planChanges(parseSecondaryT(t, secondaryFactsOut("")), false); err == nil {
		t.Error("planned without the play's keys")
	}
}

// storeFacts is the store part of the facts when s's store is in place.
func (s *SecondarySSHD) storeFacts() string {
	var b strings.Builder
	for _, u := range s.users() {
		b.WriteString("store\n" + secondaryFile(s.KeyDir()+"/"+u, s.storeContent(u)))
	}
	return b.String()
}

// With the main config broken, sshd -T fails: the emergency sshd keeps
// its own host key copies and its store, so nothing changes and nothing
// breaks.
func TestSecondaryPlanMainBroken(t *testing.T) {
	s := linked(t, mustSecondary(t, `{port: 2222, allow_users: [bg-ops1]}`), "bg-ops1")
	broken := strings.Replace(secondaryFactsOut(secondaryConverged(s)+"running 5\n"), "T ", "X ", -1) + "sshd-T-failed\n| /etc/ssh/sshd_config line 3: Bad configuration option: Bogus\n"
	f := parseSecondaryT(t, broken)
	if !strings.Contains(f.TErr, "Bogus") {
		t.Errorf("TErr %q", f.TErr)
	}
	p, err := s.planChanges(f, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.changes) != 0 {
		t.Errorf("changes %+v, want none", p.changes)
	}
	// No copies yet: sshd's default host keys that exist are copied.
	p, err = s.planChanges(parseSecondaryT(t, strings.Replace(secondaryFactsOut(""), "T ", "X ", -1)+"sshd-T-failed\n"), false)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(p.config, "HostKey /etc/breakglass/hostkeys/ssh_host_ecdsa_key\nHostKey /etc/breakglass/hostkeys/ssh_host_ed25519_key\n") || !strings.Contains(p.fallbackNotes, "does not load") {
		t.Errorf("fallback config:\n%s\nnotes %q", p.config, p.fallbackNotes)
	}
}

// Accounts sshd refuses by itself under UsePAM no are reported with their
// fix; '*' is no lock.
func TestSecondaryAccountFindings(t *testing.T) {
	s := linked(t, mustSecondary(t, `{port: 2222, allow_users: [a, b, c], root_login: true}`), "a", "b", "c")
	ufs := []*UserFacts{
		{Name: "a", Exists: true, Today: 100, Shadow: &Shadow{Password: PasswordStar, Expire: -1}},
		{Name: "b", Exists: true, Today: 100, Shadow: &Shadow{Password: PasswordLocked, Expire: -1}},
		{Name: "c", Exists: true, Today: 100, Shadow: &Shadow{Password: PasswordStar, Expire: 99}},
		{Name: "root", Exists: true, Today: 100, Shadow: &Shadow{Password: PasswordHash, Expire: -1}},
	}
	var got []string
	for _, f := range s.accountFindings(ufs, false) {
		got = append(got, f.User+" "+f.ID+" "+f.Fix)
	}
	want := []string{"b account-locked usermod -p '*' b  # key-only: '*' is no lock", "c account-expired chage -E -1 c"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("findings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	s.usePAM = true
	if fs := s.accountFindings(ufs[:2], false); len(fs) != 0 {
		t.Errorf("with UsePAM yes a '!' is no lock for keys: %+v", fs)
	}
}

func secondaryEnv(check bool) *Env {
	env := &Env{Check: check, Facts: &Facts{}}
	for _, u := range []string{"bg-ops1", "bg-ops2", "root"} {
		env.Facts.Set(UserFactsKey(u), &UserFacts{Name: u, Exists: true, Shadow: &Shadow{Password: PasswordStar, Expire: -1}})
	}
	return env
}

// secondaryHost answers as a host would: a fact batch (one round trip,
// framed) with facts, one answer per gather in order, for the emergency
// sshd's query; any other script by rec's rules.
type secondaryHost struct {
	rec   *sshdRecorder
	facts []string
}

func (h *secondaryHost) Run(ctx context.Context, cmd string, stdin []byte) ([]byte, error) {
	nonce, bodies, ok := wire.Parse(stdin)
	if !ok {
		return h.rec.Run(ctx, cmd, stdin)
	}
	h.rec.mu.Lock()
	h.rec.calls = append(h.rec.calls, cmd+"\n"+string(stdin))
	h.rec.mu.Unlock()
	var out strings.Builder
	for i, b := range bodies {
		if !strings.Contains(b, "# breakglass secondary_sshd breakglass: facts") || len(h.facts) == 0 {
			return nil, fmt.Errorf("fake host: no answer for %.60q", b)
		}
		out.WriteString(wire.Reply(nonce, i, h.facts[0], 0))
		h.facts = h.facts[1:]
	}
	return []byte(out.String()), nil
}

func TestSecondaryCheckModeSendsNoChange(t *testing.T) {
	h := &secondaryHost{rec: &sshdRecorder{}, facts: []string{secondaryFactsOut("")}}
	res, err := runModule(context.Background(), h, secondaryEnv(true), linked(t, mustSecondary(t, `{port: 2222, allow_users: [bg-ops1]}`), "bg-ops1"))
	if err != nil || !res.Changed || len(res.Changes) != 8 {
		t.Fatalf("res %+v err %v", res, err)
	}
	if len(h.rec.calls) != 1 {
		t.Errorf("check mode ran %d commands", len(h.rec.calls))
	}
}

func TestSecondaryApplyReportsInvalid(t *testing.T) {
	h := &secondaryHost{rec: (&sshdRecorder{}).on("# breakglass secondary_sshd breakglass: apply", "status invalid\n| line 5: Bad configuration option\n", nil),
		facts: []string{secondaryFactsOut("")}}
	res, err := runModule(context.Background(), h, secondaryEnv(false), linked(t, mustSecondary(t, `{port: 2222, allow_users: [bg-ops1]}`), "bg-ops1"))
	if err == nil || err.Error() != "secondary_sshd breakglass: sshd -t rejected the new config; nothing was installed: line 5: Bad configuration option" || res.Changed || len(res.Changes) != 0 {
		t.Errorf("res %+v err %v", res, err)
	}
}

// Without /run/sshd, sshd -T fails: apply creates it, looks again (the
// emergency sshd's facts only; the accounts' are still known), and plans
// from what sshd -T says now. The report lists the directory first.
func TestSecondaryPrivsepLooksAgain(t *testing.T) {
	s := linked(t, mustSecondary(t, `{port: 2222, allow_users: [bg-ops1]}`), "bg-ops1")
	noPrivsep := strings.Replace(secondaryFactsOut(""), "T ", "X ", -1) + "privsep-missing\nsshd-T-failed\n| Missing privilege separation directory: /run/sshd\n"
	h := &secondaryHost{rec: (&sshdRecorder{}).
		on("mkdir -p -m 0755 /run/sshd", "", nil).
		on("# breakglass secondary_sshd breakglass: apply", "status ok\n", nil),
		facts: []string{noPrivsep, secondaryFactsOut("")}}
	res, err := runModule(context.Background(), h, secondaryEnv(false), s)
	if err != nil {
		t.Fatal(err)
	}
	if got := h.rec.steps(); strings.Join(got, ",") != "?,mkdir -p -m 0755 /run/sshd,?,# breakglass secondary_sshd breakglass: apply" {
		t.Errorf("round trips %q", got)
	}
	if len(res.Changes) != 9 || res.Changes[0].What != privsepChange.What || !res.Changed || strings.Contains(changesOf(res), "note: ") {
		t.Errorf("changes %s", changesOf(res))
	}
	// In check mode nothing is created: the plan is made from what the
	// facts tell (sshd's default host keys), /run/sshd a change like any.
	h = &secondaryHost{rec: &sshdRecorder{}, facts: []string{noPrivsep}}
	res, err = runModule(context.Background(), h, secondaryEnv(true), s)
	if err != nil || len(h.rec.calls) != 1 || res.Changes[0].What != privsepChange.What {
		t.Errorf("check mode: %d calls, res %+v, err %v", len(h.rec.calls), res, err)
	}
}

// --- on real hosts ---

func runSecondary(t *testing.T, x *sshdLab, src string) *Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := runModule(ctx, x.h.Runner(), &Env{Host: x.h.Name, Facts: &Facts{}}, x.secondary(t, src))
	if err != nil {
		t.Fatalf("secondary_sshd: %v", err)
	}
	return res
}

// secondary decodes a secondary_sshd task and links it to authorized_key
// tasks giving bg-ops1 and bg-ops2 their lab keys.
func (x *sshdLab) secondary(t *testing.T, src string) *SecondarySSHD {
	t.Helper()
	s := mustSecondary(t, src)
	var mods []Module
	for _, u := range []string{"bg-ops1", "bg-ops2"} {
		pub, err := os.ReadFile(x.keys[u] + ".pub")
		if err != nil {
			t.Fatal(err)
		}
		mods = append(mods, mustAuthorizedKey(t, fmt.Sprintf("{user: %s, key: %q}", u, strings.TrimSpace(string(pub)))))
	}
	if err := s.LinkPlay(mods, 22); err != nil {
		t.Fatal(err)
	}
	return s
}

// rcLinks is the facts' rc-link lines of S links in the given runlevels.
func rcLinks(s *SecondarySSHD, levels ...string) string {
	var b strings.Builder
	for _, l := range levels {
		fmt.Fprintf(&b, "rc-link /etc/rc%s.d/S01%s ../init.d/%s\n", l, s.InitName(), s.InitName())
	}
	return b.String()
}

// auditSecondary runs the task as audit does (check mode, findings) and
// returns the second path's findings: id → details.
func auditSecondary(t *testing.T, x *sshdLab, src string) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s := x.secondary(t, src)
	s.Audit()
	res, err := runModule(ctx, x.h.Runner(), &Env{Host: x.h.Name, Facts: &Facts{}, Check: true}, s)
	if err != nil {
		t.Fatalf("secondary_sshd audit: %v", err)
	}
	out := map[string]string{}
	for _, f := range res.Findings {
		if strings.HasPrefix(f.ID, "second-path") {
			out[f.ID] += f.Detail + " | fix: " + f.Fix + "\n"
		}
	}
	return out
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

	// Started again at boot: no systemd here, so apply installed an init
	// script and linked it with update-rc.d into runlevels 2-5, which
	// sysvinit's rc (or OpenRC) runs at boot. The boot: the emergency sshd
	// dies, /run is empty (no pid file, no /run/sshd), and the S link of
	// runlevel 2 runs as rc runs it: "start", init's bare environment.
	t.Logf("first run: %s", changesOf(res))
	if got := x.sh(t, "stat -c '%U %a' /etc/init.d/breakglass-sshd; for l in 2 3 4 5; do readlink /etc/rc$l.d/S[0-9][0-9]breakglass-sshd; done", nil); got != "root 755\n"+strings.Repeat("../init.d/breakglass-sshd\n", 4) {
		t.Errorf("init script and rc links: %q", got)
	}
	x.sh(t, `pid=$(cat /run/sshd-breakglass.pid) && kill -KILL "$pid" && while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done; rm -rf /run/sshd-breakglass.pid /run/sshd`, nil)
	if err := x.login("bg-ops1", 2222); err == nil {
		t.Fatal("the emergency sshd still answers after it was killed")
	}
	x.sh(t, `for s in /etc/rc2.d/S[0-9][0-9]*; do case $s in *breakglass-sshd) env -i PATH=/sbin:/usr/sbin:/bin:/usr/bin RUNLEVEL=2 PREVLEVEL=N "$s" start; esac; done`, nil)
	x.mustLogin(t, 2222, "bg-ops1", "bg-ops2")
	x.mustLogin(t, 0, "admin") // the init script made /run/sshd again
	if res := runSecondary(t, x, task); res.Changed {
		t.Errorf("run after the boot changed: %s", changesOf(res))
	}
	// Unlinked: audit says it does not start at boot; apply links it again.
	x.sh(t, "update-rc.d -f breakglass-sshd remove >/dev/null 2>&1; ls /etc/rc2.d | grep breakglass || :", nil)
	if fd := auditSecondary(t, x, task); !strings.Contains(fd[FindingSecondNoBoot], "not linked to start in runlevels 2-5") {
		t.Errorf("audit with the rc links removed: %q", fd[FindingSecondNoBoot])
	}
	if got := changesOf(runSecondary(t, x, task)); !strings.Contains(got, "update-rc.d breakglass-sshd defaults") {
		t.Errorf("run with the rc links removed: %s", got)
	}
	// Linked again; what is left is that this host's PID 1 (the lab's
	// shell) is no sysvinit and may never run it.
	if fd := auditSecondary(t, x, task); !strings.Contains(fd[FindingSecondNoBoot], "is installed and linked, but PID 1 is bash, not sysvinit's init") {
		t.Errorf("audit after the repair: %q", fd[FindingSecondNoBoot])
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

	// Dead, and /run/sshd gone (sshd -T cannot run without it): the run
	// creates it, looks again and plans from what sshd -T says then (no
	// fallback to the default host keys), and starts the daemon.
	x.sh(t, `pid=$(cat /run/sshd-breakglass.pid) && kill "$pid" && while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done; rm -rf /run/sshd; ! sshd -T >/dev/null 2>&1`, nil)
	res = runSecondary(t, x, task)
	if got := changesOf(res); !strings.HasPrefix(got, "create /run/sshd (") || !strings.Contains(got, "; start /usr/sbin/sshd -f /etc/ssh/sshd_config_breakglass (not running)") || strings.Contains(got, "does not load") {
		t.Errorf("run without /run/sshd: %s", got)
	}
	if got := x.sh(t, "stat -c '%U %a' /run/sshd", nil); got != "root 755\n" {
		t.Errorf("/run/sshd: %q", got)
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
	if got := x.sh(t, "ls /etc/ssh/.sshd_config_breakglass.breakglass.bak", nil); got == "" {
		t.Error("no backup of the previous config")
	}

	// Without PAM, sshd itself refuses a password field starting with '!':
	// the run says so, with the fix, and the fix works.
	x.sh(t, "usermod -p '!' bg-ops1", nil)
	res = runSecondary(t, x, fmt.Sprintf(`{port: 2222, allow_users: [bg-ops1], listen: %s}`, x.h.Addr))
	var locked *Finding
	for i, f := range res.Findings {
		if f.ID == "account-locked" && f.User == "bg-ops1" {
			locked = &res.Findings[i]
		}
	}
	if locked == nil || locked.Severity != "lockout" || !strings.HasPrefix(locked.Fix, "usermod -p '*' bg-ops1") {
		t.Fatalf("findings %+v, want account-locked for bg-ops1 with its fix", res.Findings)
	}
	if err := x.login("bg-ops1", 2222); err == nil {
		t.Error("a '!' account logs in on the emergency port: the finding would be wrong")
	}
	x.sh(t, "usermod -p '*' bg-ops1", nil)
	x.mustLogin(t, 2222, "bg-ops1")

	// key_file: on the task: bg-ops1 gets exactly bg-ops2's key on this
	// port, whatever the play gives it.
	res = runSecondary(t, x, fmt.Sprintf(`{port: 2222, allow_users: [bg-ops1], listen: %s, key_file: {bg-ops1: %s.pub}}`, x.h.Addr, x.keys["bg-ops2"]))
	if got := changesOf(res); !strings.Contains(got, "update /etc/breakglass/keys/bg-ops1") {
		t.Errorf("key_file run: %s", got)
	}
	if err := x.login("bg-ops1", 2222); err == nil {
		t.Error("bg-ops1's own key still logs in on the emergency port after key_file gave it another")
	}
	own := x.keys["bg-ops1"]
	x.keys["bg-ops1"] = x.keys["bg-ops2"]
	x.mustLogin(t, 2222, "bg-ops1")
	x.keys["bg-ops1"] = own
}

// A port someone else holds: the error quotes sshd's own words and says
// who holds it; nothing else changes.
func TestSecondaryPortTakenOnHost(t *testing.T) {
	t.Parallel()
	x := newSSHDLab(t)
	x.sh(t, fmt.Sprintf("/usr/sbin/sshd -o Port=2223 -o ListenAddress=%s -o PidFile=/run/other-sshd.pid", x.h.Addr), nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := runModule(ctx, x.h.Runner(), &Env{Host: x.h.Name, Facts: &Facts{}}, x.secondary(t, fmt.Sprintf(`{port: 2223, allow_users: [bg-ops1], listen: %s}`, x.h.Addr)))
	t.Logf("error: %v", err)
	if err == nil || !strings.Contains(err.Error(), "Address already in use") || !strings.Contains(err.Error(), "port 2223 is held by") || !strings.Contains(err.Error(), "sshd") {
		t.Errorf("err %v", err)
	}
	if got := x.sh(t, "cat /run/other-sshd.pid >/dev/null && echo other-running", nil); got != "other-running\n" {
		t.Errorf("the other listener: %q", got)
	}
	// Nothing else changed: the holder still has its port, the main sshd
	// still lets people in, and no emergency sshd half-runs.
	if got := x.sh(t, "ls /run/sshd-breakglass.pid 2>/dev/null || echo no-pidfile", nil); got != "no-pidfile\n" {
		t.Errorf("after the failed start: %q", got)
	}
	x.mustLogin(t, 0, "admin", "bg-ops1")
	x.mustLogin(t, 2223, "admin") // the holder, untouched
}

// keys: and key_file: on the task give a user exactly those keys on this
// port (the play's authorized_key tasks are not consulted for that user);
// a user named in neither gets the play's keys. Every input error has its
// position.
func TestSecondaryTaskKeys(t *testing.T) {
	k1, k2, k3, k4 := testKey(t, 1, "one"), testKey(t, 2, "two"), testKey(t, 3, "three"), testKey(t, 4, "four")
	dir := t.TempDir()
	pub := dir + "/bg-ops2.pub"
	if err := os.WriteFile(pub, []byte("# bg-ops2's key\n\n"+k3+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	priv := dir + "/id_ed25519"
	if err := os.WriteFile(priv, []byte("-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn\n-----END OPENSSH PRIVATE KEY-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	mods := []Module{
		mustAuthorizedKey(t, fmt.Sprintf(`{user: bg-ops1, key: %q}`, k4)),
		mustAuthorizedKey(t, fmt.Sprintf(`{user: bg-ops3, key: %q}`, k4)),
	}
	s := mustSecondary(t, fmt.Sprintf("port: 2222\nallow_users: [bg-ops1, bg-ops2, bg-ops3]\nroot_login: true\nkeys:\n  bg-ops1: [%q, %q]\nkey_file: {bg-ops2: %s}\n", k1, k2, pub))
	if err := s.LinkPlay(mods, 22); err != nil {
		t.Fatal(err)
	}
	for u, want := range map[string][]string{"bg-ops1": {k1, k2}, "bg-ops2": {k3}, "bg-ops3": {k4}} {
		if got := s.store[u]; !slices.Equal(got, want) {
			t.Errorf("%s's store: %q, want %q", u, got, want)
		}
	}
	if c := s.storeContent("bg-ops1"); !strings.Contains(c, "# The keys the secondary_sshd task gives bg-ops1 (keys:, key_file:).\n") || strings.Contains(c, k4) {
		t.Errorf("bg-ops1's file:\n%s", c)
	}
	if root := s.storeContent("root"); !strings.Contains(root, k1) || !strings.Contains(root, k3) || !strings.Contains(root, k4) {
		t.Errorf("root's file:\n%s", root)
	}

	src := fmt.Sprintf(`port: 2222
allow_users: [bg-ops1, bg-ops2]
keys:
  bg-ops1: ["not a key", %q, %q]
  stranger: [%q]
  bg-ops2: []
key_file: {bg-ops2: %s/missing.pub, bg-ops1: %s}
`, k1, k1, k2, dir, priv)
	_, err := sshdDecode(t, "secondary_sshd", src)
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{
		"pb.yml:4:13: secondary_sshd: keys: bg-ops1[0]: not a public key",
		"pb.yml:4:", "keys: bg-ops1[2]: the same key is given to bg-ops1 twice",
		"pb.yml:5:3: secondary_sshd: keys: stranger is not in allow_users",
		"pb.yml:6:12: secondary_sshd: keys: bg-ops2: give at least one key",
		"pb.yml:7:21: secondary_sshd: key_file: open " + dir + "/missing.pub",
		"secondary_sshd: key_file " + priv + ": line 1: this is a private key; name the .pub file",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "b3Blbn") {
		t.Error("the error quotes the private key file")
	}
}

// A main sshd that presents a host certificate: the emergency sshd
// presents its own copy of it, so a client trusting the host CA
// (@cert-authority) gets in with strict checking; deleting the main
// certificate changes nothing on the emergency port.
func TestSecondaryHostCertificateOnHost(t *testing.T) {
	t.Parallel()
	x := newSSHDLab(t)
	dir := t.TempDir()
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "host-ca", "-f", dir+"/ca").CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v: %s", err, out)
	}
	if err := os.WriteFile(dir+"/host.pub", []byte(x.sh(t, "cat /etc/ssh/ssh_host_ed25519_key.pub", nil)), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("ssh-keygen", "-q", "-s", dir+"/ca", "-I", x.h.Name, "-h", "-n", x.h.Addr, dir+"/host.pub").CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen -s: %v: %s", err, out)
	}
	cert, err := os.ReadFile(dir + "/host-cert.pub")
	if err != nil {
		t.Fatal(err)
	}
	x.sh(t, `cat > /etc/ssh/ssh_host_ed25519_key-cert.pub
echo 'HostCertificate /etc/ssh/ssh_host_ed25519_key-cert.pub' > /etc/ssh/sshd_config.d/00-cert.conf
kill -HUP $(cat /run/sshd.pid)`, cert)
	ca, err := os.ReadFile(dir + "/ca.pub")
	if err != nil {
		t.Fatal(err)
	}
	caKnown := dir + "/known_hosts_ca"
	if err := os.WriteFile(caKnown, []byte("@cert-authority * "+string(ca)), 0o644); err != nil {
		t.Fatal(err)
	}
	// presents: the port offers the certificate, and a client that knows
	// only the CA logs in with strict checking.
	presents := func(what string) {
		t.Helper()
		out, _ := exec.Command("ssh-keyscan", "-c", "-p", "2222", x.h.Addr).CombinedOutput()
		if !strings.Contains(string(out), "ssh-ed25519-cert-v01@openssh.com") {
			t.Errorf("%s: port 2222 presents no certificate:\n%s", what, out)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, "ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=yes",
			"-o", "UserKnownHostsFile="+caKnown, "-o", "GlobalKnownHostsFile=/dev/null", "-p", "2222", "-i", x.keys["bg-ops1"], "bg-ops1@"+x.h.Addr, "id -un").CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "bg-ops1" {
			t.Errorf("%s: login trusting only the host CA: %v: %s", what, err, out)
		}
	}
	task := fmt.Sprintf(`{port: 2222, allow_users: [bg-ops1, bg-ops2], listen: %s}`, x.h.Addr)
	res := runSecondary(t, x, task)
	if got := changesOf(res); !strings.Contains(got, "copy the host certificate /etc/ssh/ssh_host_ed25519_key-cert.pub to /etc/breakglass/hostkeys/ssh_host_ed25519_key-cert.pub") {
		t.Errorf("first run: %s", got)
	}
	if got := x.sh(t, "grep HostCertificate /etc/ssh/sshd_config_breakglass; stat -c '%U %a' /etc/breakglass/hostkeys/ssh_host_ed25519_key-cert.pub", nil); got != "HostCertificate /etc/breakglass/hostkeys/ssh_host_ed25519_key-cert.pub\nroot 644\n" {
		t.Errorf("config and copy: %q", got)
	}
	presents("after apply")
	x.mustLogin(t, 2222, "bg-ops1") // the plain host key, from the lab's known_hosts, still works
	if res := runSecondary(t, x, task); res.Changed {
		t.Errorf("second run changed: %s", changesOf(res))
	}
	x.sh(t, "rm /etc/ssh/ssh_host_ed25519_key-cert.pub", nil)
	if res := runSecondary(t, x, task); res.Changed {
		t.Errorf("run with the main certificate deleted changed: %s", changesOf(res))
	}
	presents("with the main certificate deleted")

	// A certificate the main config names in a directory a user can
	// write: the user swaps it for a link to /etc/shadow. The copy is
	// world-readable, so root must refuse to read it, never copy it.
	x.sh(t, `useradd -m -s /bin/sh mallory && mkdir -m 1777 /srv/certs
setpriv --reuid=mallory --regid=mallory --init-groups -- ln -s /etc/shadow /srv/certs/stolen-cert.pub
echo 'HostCertificate /srv/certs/stolen-cert.pub' > /etc/ssh/sshd_config.d/00-cert.conf`, nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := runModule(ctx, x.h.Runner(), &Env{Host: x.h.Name, Facts: &Facts{}}, x.secondary(t, task)); err == nil || !strings.Contains(err.Error(), "a link a user could have made") {
		t.Errorf("a user's link as host certificate: err %v, want a refusal", err)
	}
	if got := x.sh(t, "grep -rl \"$(head -n 1 /etc/shadow)\" /etc/breakglass || true", nil); got != "" {
		t.Errorf("/etc/shadow was copied where the emergency sshd presents it: %s", got)
	}
}

// Audit says when nothing starts the emergency sshd at boot, with the fix
// that fits what the host runs.
func TestSecondaryBootFinding(t *testing.T) {
	s := linked(t, mustSecondary(t, `{port: 2222, allow_users: [bg-ops1]}`), "bg-ops1")
	current := secondaryConverged(s)
	init := strings.Replace(secondaryFile(s.InitPath(), s.renderInit("/usr/sbin/sshd")), "file 0 0 644", "file 0 0 755", 1)
	tests := []struct{ name, facts, want string }{
		{"systemd, enabled", "systemd\nenabled enabled\nactive active\n", ""},
		{"systemd, disabled", "systemd\nenabled disabled\nactive active\n", "fix: systemctl enable breakglass-sshd.service"},
		{"sysv-rc, linked", "pid1 init\nsysv-rc\n" + init + rcLinks(s, "2", "3", "4", "5"), ""},
		{"sysv-rc, not linked", "pid1 init\nsysv-rc\n" + init, "/etc/init.d/breakglass-sshd is not linked to start in runlevels 2-5 (update-rc.d)"},
		{"sysv-rc, no script", "pid1 init\nsysv-rc\n" + rcLinks(s, "2", "3", "4", "5"), "/etc/init.d/breakglass-sshd is missing or differs"},
		{"sysv-rc, linked, PID 1 no init", "pid1 tini\nsysv-rc\n" + init + rcLinks(s, "2", "3", "4", "5"), "info: the emergency sshd breakglass (port 2222) may not start at boot: /etc/init.d/breakglass-sshd is installed and linked, but PID 1 is tini"},
		{"cron, entry in place", "pid1 tini\ncron /usr/sbin/cron\ncron-running\n" + secondaryFile(s.CronPath(), s.renderCron("/usr/sbin/sshd")), ""},
		{"cron, entry in place, no cron running", "pid1 tini\ncron /usr/sbin/cron\n" + secondaryFile(s.CronPath(), s.renderCron("/usr/sbin/sshd")), "no cron daemon runs now (PID 1 is tini), and @reboot runs only when one starts | fix: start cron when the host starts"},
		{"cron, no entry", "pid1 tini\ncron /usr/sbin/cron\n", "the @reboot entry /etc/cron.d/breakglass-sshd is missing"},
		{"nothing at boot", "pid1 tini\n", "this host runs no systemd (PID 1 is tini), has no sysv-rc (/etc/init.d and update-rc.d) and no cron daemon; after a reboot it stays down until the next apply | fix: apt-get install cron, then breakglass apply"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := parseSecondaryT(t, secondaryFactsOut(current+tt.facts+"running 77\n"))
			p, err := s.planChanges(f, false)
			if err != nil {
				t.Fatal(err)
			}
			got := ""
			for _, fd := range s.auditFindings(f, p, "web01") {
				if fd.ID == FindingSecondNoBoot {
					got = fd.Severity + ": " + fd.Detail + " | fix: " + fd.Fix
				}
			}
			if tt.want == "" && got != "" || !strings.Contains(got, tt.want) || tt.want != "" && !strings.HasPrefix(got, "risk: ") && !strings.HasPrefix(got, "info: ") {
				t.Errorf("finding %q, want %q", got, tt.want)
			}
		})
	}
}
