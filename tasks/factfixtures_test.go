package tasks

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// factFixture is one recorded output of a fact query (testdata/facts, see
// its README.md) and the facts it must parse to.
type factFixture struct {
	file  string // under testdata/facts
	parse func([]byte) (any, error)
	want  any              // compared whole when check is nil
	check func(any) string // what is wrong with the parsed facts, "" when right
}

func factFixtures() []factFixture {
	path := func(p string) func([]byte) (any, error) { return PathQuery(p).Parse }
	group := GroupQuery("g").Parse
	exists := commandExistsQuery("/x").Parse
	// The daemon's pid changes from boot to boot; any but init's.
	sshd := func(systemd bool, args []string, maxStartups, perSource, dropIns string, terr string) func(any) string {
		return func(v any) string {
			f := v.(*sshdFacts)
			var bad []string
			if f.Systemd != systemd || f.PrivsepMissing || !f.DropInDir || f.PidFile != "/run/sshd.pid" {
				bad = append(bad, "flags or pidfile")
			}
			if f.DaemonPID <= 1 || !reflect.DeepEqual(f.DaemonArgs, args) {
				bad = append(bad, "daemon")
			}
			if f.MaxStartups != maxStartups || f.PerSourceMaxStartups != perSource {
				bad = append(bad, "maxstartups")
			}
			if m := f.Main; m == nil || !m.Regular || m.Link || m.UID != 0 || m.GID != 0 || m.Mode != 0o644 || m.Path != SSHDConfigPath ||
				!strings.HasPrefix(m.Content, "\n# This is the sshd server system-wide configuration file.") || !strings.Contains(m.Content, "\nInclude /etc/ssh/sshd_config.d/*.conf\n") {
				bad = append(bad, "main file")
			}
			var names []string
			for _, d := range f.DropIns {
				n := strings.TrimPrefix(d.Path, SSHDDropInDir+"/")
				switch {
				case !d.Regular:
					n += "(other)"
				case d.Link:
					n += "(link)"
				}
				names = append(names, n)
				if d.Regular && (d.UID != 0 || d.GID != 0 || d.Mode != 0o644) {
					bad = append(bad, "owner/mode of "+n)
				}
			}
			if strings.Join(names, " ") != dropIns {
				bad = append(bad, "drop-ins "+strings.Join(names, " "))
			}
			if lc := f.dropIn(SSHDDropInDir + "/lab.conf"); lc == nil || !strings.Contains(lc.Content, "\nListenAddress 127.") || !strings.HasSuffix(lc.Content, "\nHostKey /etc/ssh/ssh_host_ed25519_key\n") {
				bad = append(bad, "lab.conf")
			}
			if d := f.dropIn(SSHDDropInDir + "/10-bg.conf"); d != nil && d.Content != "MaxStartups 3:50:9\nPerSourceMaxStartups 2\n" && d.Content != "Bogus yes\n" {
				bad = append(bad, "10-bg.conf content")
			}
			if d := f.dropIn(SSHDDropInDir + "/20-link.conf"); d != nil && d.Content != "LogLevel INFO\n" {
				bad = append(bad, "20-link.conf content (followed)")
			}
			if f.TErr != terr {
				bad = append(bad, "sshd -T error "+f.TErr)
			}
			return strings.Join(bad, "; ")
		}
	}
	nsArgs := []string{"/usr/sbin/sshd", "-E", "/var/log/auth.log"}
	sysArgs := []string{"/usr/sbin/sshd", "-D"}
	const bogus = "sshd -T failed: /etc/ssh/sshd_config.d/10-bg.conf: line 1: Bad configuration option: Bogus\n/etc/ssh/sshd_config.d/10-bg.conf: terminating, 1 bad configuration options"
	secondary := func(systemd, installed bool) func(any) string {
		return func(v any) string {
			f := v.(*secondaryFacts)
			var bad []string
			if f.Systemd != systemd || f.SSHD != "/usr/sbin/sshd" || f.PrivsepMissing || f.TErr != "" || f.PID != 0 {
				bad = append(bad, "flags")
			}
			const key = "/etc/ssh/ssh_host_ed25519_key"
			if hk := f.T["hostkey"]; len(hk) != 1 || hk[0] != key || len(f.T["listenaddress"]) != 1 || !strings.HasPrefix(f.T["listenaddress"][0], "127.") || !strings.HasSuffix(f.T["listenaddress"][0], ":22") {
				bad = append(bad, "sshd -T")
			}
			if !reflect.DeepEqual(f.Exists, map[string]bool{key: true}) || !reflect.DeepEqual(f.HostKeySame, map[string]bool{key: installed}) {
				bad = append(bad, "host keys")
			}
			if systemd {
				if !f.DebianSSH || f.Enabled != "not-found" || f.Active != "inactive" || f.Unit != nil || f.PrivsepDropIn != nil || f.PID1 != "" || f.SysvRC {
					bad = append(bad, "systemd")
				}
			} else if f.PID1 != "bash" || !f.SysvRC || f.Cron != "" || f.CronRuns || f.InitScript != nil || f.CronFile != nil || len(f.RCLinks) != 0 || f.DebianSSH || f.Enabled != "" {
				bad = append(bad, "boot without systemd")
			}
			if !installed {
				if len(f.Dirs) != 0 || len(f.Copies) != 0 || len(f.Store) != 0 || f.Config != nil {
					bad = append(bad, "not installed")
				}
				return strings.Join(bad, "; ")
			}
			wantDirs := map[string]secondaryDir{
				"/etc/breakglass":          {Exists: true, Dir: true, Mode: 0o755},
				"/etc/breakglass/keys":     {Exists: true, Dir: true, Mode: 0o755},
				"/etc/breakglass/hostkeys": {Exists: true, Dir: true, Mode: 0o700},
			}
			if !reflect.DeepEqual(f.Dirs, wantDirs) {
				bad = append(bad, "dirs")
			}
			wantCopies := map[string]sshdFile{}
			for _, n := range []string{"ssh_host_ecdsa_key", "ssh_host_ed25519_key"} {
				p := "/etc/breakglass/hostkeys/" + n
				wantCopies[p] = sshdFile{Path: p, Regular: true, Mode: 0o600}
			}
			if !reflect.DeepEqual(f.Copies, wantCopies) {
				bad = append(bad, "copies")
			}
			wantStore := map[string]sshdFile{
				"bg-ops1": {Path: "/etc/breakglass/keys/bg-ops1", Regular: true, Mode: 0o644, Content: "ssh-ed25519 AAAA bg-ops1\n"},
				".hidden": {Path: "/etc/breakglass/keys/.hidden", Regular: true, Mode: 0o644, Content: "x\n"},
			}
			if !reflect.DeepEqual(f.Store, wantStore) {
				bad = append(bad, "store")
			}
			if c := f.Config; c == nil || *c != (sshdFile{Path: "/etc/ssh/sshd_config_breakglass", Regular: true, Mode: 0o644, Content: "Port 2222\n"}) {
				bad = append(bad, "config")
			}
			return strings.Join(bad, "; ")
		}
	}
	// Without /run/sshd sshd -T fails; with the emergency sshd installed
	// and running, every file of it is in place.
	secondaryState := func(systemd bool, state string) func(any) string {
		return func(v any) string {
			f := v.(*secondaryFacts)
			var bad []string
			const key = "/etc/ssh/ssh_host_ed25519_key"
			if f.Systemd != systemd || f.SSHD != "/usr/sbin/sshd" || !reflect.DeepEqual(f.Exists, map[string]bool{key: true}) {
				bad = append(bad, "flags")
			}
			if systemd != (f.DebianSSH && f.PID1 == "" && !f.SysvRC) || !systemd && f.PID1 != "bash" {
				bad = append(bad, "boot")
			}
			if state == "noprivsep" {
				if !f.PrivsepMissing || f.TErr != "sshd -T failed: Missing privilege separation directory: /run/sshd" || len(f.T) != 0 || f.PID != 0 ||
					!reflect.DeepEqual(f.HostKeySame, map[string]bool{key: false}) || len(f.Dirs)+len(f.Copies)+len(f.Store) != 0 || f.Config != nil {
					bad = append(bad, "no privsep dir")
				}
				return strings.Join(bad, "; ")
			}
			if f.PrivsepMissing || f.TErr != "" || f.PID <= 1 || !reflect.DeepEqual(f.HostKeySame, map[string]bool{key: true}) || len(f.T["listenaddress"]) != 1 {
				bad = append(bad, "running")
			}
			wantDirs := map[string]secondaryDir{
				"/etc/breakglass":          {Exists: true, Dir: true, Mode: 0o755},
				"/etc/breakglass/keys":     {Exists: true, Dir: true, Mode: 0o755},
				"/etc/breakglass/hostkeys": {Exists: true, Dir: true, Mode: 0o700},
			}
			copyPath := "/etc/breakglass/hostkeys/ssh_host_ed25519_key"
			if !reflect.DeepEqual(f.Dirs, wantDirs) || !reflect.DeepEqual(f.Copies, map[string]sshdFile{copyPath: {Path: copyPath, Regular: true, Mode: 0o600}}) {
				bad = append(bad, "dirs or copies")
			}
			if st, ok := f.Store["bg-ops1"]; len(f.Store) != 1 || !ok || st.Mode != 0o644 || !strings.HasPrefix(st.Content, "# Managed by breakglass") || !strings.HasSuffix(st.Content, " bg-ops1\n") {
				bad = append(bad, "store")
			}
			listen := "ListenAddress " + strings.TrimSuffix(strings.Join(f.T["listenaddress"], ""), ":22") + "\n"
			if c := f.Config; c == nil || c.Mode != 0o644 || !strings.Contains(c.Content, "\nPort 2222\n"+listen+"HostKey "+copyPath+"\n") || !strings.Contains(c.Content, "\nAllowUsers bg-ops1\n") {
				bad = append(bad, "config")
			}
			if systemd {
				if f.Unit == nil || !strings.Contains(f.Unit.Content, "\nExecStart=/usr/sbin/sshd -D -f /etc/ssh/sshd_config_breakglass\n") || f.PrivsepDropIn == nil ||
					f.PrivsepDropIn.Content != secondaryPrivsepConf || f.Enabled != "enabled" || f.Active != "active" {
					bad = append(bad, "unit")
				}
			} else if f.InitScript == nil || f.InitScript.Mode != 0o755 || !strings.HasPrefix(f.InitScript.Content, "#!/bin/sh\n") || len(f.RCLinks) != 4 || f.RCLinks["/etc/rc2.d/S01breakglass-sshd"] != "../init.d/breakglass-sshd" {
				bad = append(bad, "init script")
			}
			return strings.Join(bad, "; ")
		}
	}
	userFacts := func(name string, systemd bool) func(any) string {
		return func(v any) string {
			u := v.(*UserFacts)
			var bad []string
			if u.Name != name || u.Today != 20794 || u.Conn.Client != "127.0.0.1" || !strings.HasPrefix(u.Conn.Server, "127.") || u.Conn.Port != 22 {
				bad = append(bad, "name, day or connection")
			}
			if u.SSHDKnown() != nil || !u.SSHD.StrictModes || u.SSHD.Get("pubkeyauthentication") != "yes" || u.SSHD.Get("listenaddress") != u.Conn.Server+":22" {
				bad = append(bad, "sshd")
			}
			// OpenSSH 10 runs the session in its own binary.
			if (u.SSHD.Get("sshdsessionpath") == "/usr/lib/openssh/sshd-session") != systemd {
				bad = append(bad, "sshd-session")
			}
			home := "/home/" + name
			if u.Home != home || u.HomeReal != home || u.HomeLink != nil || len(u.KeyFiles) != 2 {
				bad = append(bad, "home or key files")
				return strings.Join(bad, "; ")
			}
			for i, pat := range []string{".ssh/authorized_keys", ".ssh/authorized_keys2"} {
				k := u.KeyFiles[i]
				if k.Pattern != pat || k.Path != home+"/"+pat || k.Real != k.Path || len(k.Walk) != 5 || k.Walk[4] != (PathStat{Path: "/", Exists: true, Mode: 0o40755}) || k.Walk[3] != (PathStat{Path: "/home", Exists: true, Mode: 0o40755}) {
					bad = append(bad, "key file "+pat)
				}
			}
			if !u.Exists {
				if u.UID != -1 || u.Shadow != nil || u.HomeStat.Exists || u.KeyFiles[0].Walk[0].Exists || u.KeyFiles[0].Content != nil {
					bad = append(bad, "missing user")
				}
				return strings.Join(bad, "; ")
			}
			k := u.KeyFiles[0]
			if u.UID < 1000 || u.GID != u.UID || u.Shell != "/bin/bash" || u.ShellStat != (PathStat{Path: "/bin/bash", Exists: true, Mode: 0o100755}) || !reflect.DeepEqual(u.Groups, []string{name}) {
				bad = append(bad, "passwd")
			}
			if u.Shadow == nil || *u.Shadow != (Shadow{Password: PasswordStar, LastChange: 19000, Max: 99999, Inactive: -1, Expire: -1}) {
				bad = append(bad, "shadow")
			}
			if u.HomeStat != (PathStat{Path: home, Exists: true, UID: u.UID, GID: u.GID, Mode: 0o40700}) ||
				k.Walk[0] != (PathStat{Path: k.Path, Exists: true, UID: u.UID, GID: u.GID, Mode: 0o100600}) ||
				k.Walk[1] != (PathStat{Path: home + "/.ssh", Exists: true, UID: u.UID, GID: u.GID, Mode: 0o40700}) ||
				!strings.HasPrefix(string(k.Content), "ssh-ed25519 ") || !strings.HasSuffix(string(k.Content), " admin@breakglass-lab\n") ||
				u.KeyFiles[1].Walk[0].Exists || u.KeyFiles[1].Content != nil {
				bad = append(bad, "stat or content")
			}
			return strings.Join(bad, "; ")
		}
	}
	return []factFixture{
		{file: "userfacts/admin.namespace.txt", parse: UserFactsQuery("admin", Conn{}).Parse, check: userFacts("admin", false)},
		{file: "userfacts/admin.trixie.txt", parse: UserFactsQuery("admin", Conn{}).Parse, check: userFacts("admin", true)},
		{file: "userfacts/ghost.namespace.txt", parse: UserFactsQuery("ghost", Conn{}).Parse, check: userFacts("ghost", false)},
		{file: "userfacts/ghost.trixie.txt", parse: UserFactsQuery("ghost", Conn{}).Parse, check: userFacts("ghost", true)},
		{file: "path/binsh.namespace.txt", parse: path("/bin/sh"), want: PathStat{Path: "/bin/sh", Exists: true, Mode: 0o100755}},
		{file: "path/dir.namespace.txt", parse: path("/root"), want: PathStat{Path: "/root", Exists: true, Mode: 0o40700}},
		{file: "path/missing.namespace.txt", parse: path("/nonexistent/shell"), want: PathStat{Path: "/nonexistent/shell"}},
		{file: "path/dangling.namespace.txt", parse: path("/srv/dangling"), want: PathStat{Path: "/srv/dangling"}},
		{file: "path/space.namespace.txt", parse: path("/srv/a b"), want: PathStat{Path: "/srv/a b", Exists: true, UID: 1234, GID: 5678, Mode: 0o42750}},
		{file: "group/present.namespace.txt", parse: group, want: true},
		{file: "group/absent.namespace.txt", parse: group, want: false},
		{file: "command_exists/yes.namespace.txt", parse: exists, want: true},
		{file: "command_exists/no.namespace.txt", parse: exists, want: false},
		{file: "command_exists/dangling.namespace.txt", parse: exists, want: false},
		{file: "sudoers/absent.namespace.txt", parse: parseSudoersFile, want: sudoersFile{}},
		{file: "sudoers/regular.namespace.txt", parse: parseSudoersFile, want: sudoersFile{Exists: true, Type: "regular file", Mode: 0o440, Content: "# ops\n%ops ALL=(ALL) ALL\n"}},
		{file: "sudoers/empty.namespace.txt", parse: parseSudoersFile, want: sudoersFile{Exists: true, Type: "regular empty file", UID: 1000, GID: 1000, Mode: 0o644}},
		{file: "sudoers/directory.namespace.txt", parse: parseSudoersFile, want: sudoersFile{Exists: true, Type: "directory", Mode: 0o755}},
		{file: "sudoers/symlink.namespace.txt", parse: parseSudoersFile, want: sudoersFile{Exists: true, Type: "symbolic link", Mode: 0o777}},
		{file: "sudoers/leftovers.namespace.txt", parse: parseSudoersFile, want: sudoersFile{Exists: true, Type: "regular file", Mode: 0o440, Content: "# ops\n",
			Leftovers: []string{".ops.breakglass-new.0123456789ab", ".ops.breakglass-old.0123456789ab"}}},
		{file: "probe/sudo.namespace.txt", parse: probeQuery().Parse, want: probeFacts{User: "admin", Sudo: true}},
		{file: "probe/nosudo.namespace.txt", parse: probeQuery().Parse, want: probeFacts{User: "bg-rec1"}},
		{file: "probe/sudopassword.namespace.txt", parse: probeQuery().Parse, want: probeFacts{User: "bg-rec2"}},
		{file: "sshd/default.namespace.txt", parse: parseSSHDFacts, check: sshd(false, nsArgs, "10:30:100", "none", "lab.conf", "")},
		{file: "sshd/default.trixie.txt", parse: parseSSHDFacts, check: sshd(true, sysArgs, "10:30:100", "none", "lab.conf", "")},
		{file: "sshd/dropin.namespace.txt", parse: parseSSHDFacts, check: sshd(false, nsArgs, "3:50:9", "2", "10-bg.conf 20-link.conf(link) 30-dir(other) lab.conf", "")},
		{file: "sshd/dropin.trixie.txt", parse: parseSSHDFacts, check: sshd(true, sysArgs, "3:50:9", "2", "10-bg.conf 20-link.conf(link) 30-dir(other) lab.conf", "")},
		{file: "sshd/broken.namespace.txt", parse: parseSSHDFacts, check: sshd(false, nsArgs, "", "", "10-bg.conf lab.conf", bogus)},
		{file: "sshd/broken.trixie.txt", parse: parseSSHDFacts, check: sshd(true, sysArgs, "", "", "10-bg.conf lab.conf", bogus)},
		{file: "secondary_sshd/absent.namespace.txt", parse: parseSecondaryFacts, check: secondary(false, false)},
		{file: "secondary_sshd/absent.trixie.txt", parse: parseSecondaryFacts, check: secondary(true, false)},
		{file: "secondary_sshd/partial.namespace.txt", parse: parseSecondaryFacts, check: secondary(false, true)},
		{file: "secondary_sshd/partial.trixie.txt", parse: parseSecondaryFacts, check: secondary(true, true)},
		{file: "secondary_sshd/noprivsep.namespace.txt", parse: parseSecondaryFacts, check: secondaryState(false, "noprivsep")},
		{file: "secondary_sshd/noprivsep.trixie.txt", parse: parseSecondaryFacts, check: secondaryState(true, "noprivsep")},
		{file: "secondary_sshd/installed.namespace.txt", parse: parseSecondaryFacts, check: secondaryState(false, "installed")},
		{file: "secondary_sshd/installed.trixie.txt", parse: parseSecondaryFacts, check: secondaryState(true, "installed")},
	}
}

// TestFactFixtures parses every recorded fact query output and checks the
// facts field by field; every recorded file must be in the table.
func TestFactFixtures(t *testing.T) {
	seen := map[string]bool{}
	for _, fx := range factFixtures() {
		seen[fx.file] = true
		t.Run(fx.file, func(t *testing.T) {
			out, err := os.ReadFile(filepath.Join("testdata", "facts", fx.file))
			if err != nil {
				t.Fatal(err)
			}
			v, err := fx.parse(out)
			if err != nil {
				t.Fatal(err)
			}
			if fx.check != nil {
				if bad := fx.check(v); bad != "" {
					t.Errorf("%s: %+v", bad, v)
				}
			} else if !reflect.DeepEqual(v, fx.want) {
				t.Errorf("got %+v, want %+v", v, fx.want)
			}
		})
	}
	files, err := filepath.Glob(filepath.Join("testdata", "facts", "*", "*.txt"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if rel := strings.TrimPrefix(filepath.ToSlash(f), "testdata/facts/"); !seen[rel] {
			t.Errorf("%s is recorded but not checked", rel)
		}
	}
}

// TestFactEdgeCases feeds the fact parsers what a host may answer instead
// of a clean recording: nothing, a cut-off answer, a stray line.
func TestFactEdgeCases(t *testing.T) {
	read := func(f string) string {
		b, err := os.ReadFile(filepath.Join("testdata", "facts", f))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	sshdOut := read("sshd/dropin.namespace.txt")
	secOut := read("secondary_sshd/partial.namespace.txt")
	cut := func(s, after string) string { // s up to and including the first line that starts with after, plus half the next line
		i := strings.Index(s, "\n"+after)
		j := strings.Index(s[i+1:], "\n") + i + 2
		k := strings.Index(s[j:], "\n")
		return s[:j+k/2]
	}
	sshdClean, err := parseSSHDFacts([]byte(sshdOut))
	if err != nil {
		t.Fatal(err)
	}
	secClean, err := parseSecondaryFacts([]byte(secOut))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		parse func([]byte) (any, error)
		out   string
		want  any // nil: an error
	}{
		{"path empty", PathQuery("/bin/sh").Parse, "", nil},
		{"path cut", PathQuery("/bin/sh").Parse, "0 0 81", nil},
		{"path other file", PathQuery("/bin/sh").Parse, "0 0 81ed /bin/bash\n", nil},
		{"path stray line", PathQuery("/bin/sh").Parse, "0 0 81ed /bin/sh\nstat: warning\n", nil},
		{"path bad number", PathQuery("/bin/sh").Parse, "root 0 81ed /bin/sh\n", nil},
		{"path no newline", PathQuery("/bin/sh").Parse, "0 0 81ed /bin/sh", PathStat{Path: "/bin/sh", Exists: true, Mode: 0o100755}},
		{"group empty", GroupQuery("g").Parse, "", nil},
		{"group stray line", GroupQuery("g").Parse, "present\nabsent\n", nil},
		{"group other word", GroupQuery("g").Parse, "maybe\n", nil},
		{"group spaces", GroupQuery("g").Parse, "  absent \r\n", false},
		{"exists empty", commandExistsQuery("/x").Parse, "", nil},
		{"exists cut", commandExistsQuery("/x").Parse, "ye", nil},
		{"exists stray line", commandExistsQuery("/x").Parse, "motd\nyes\n", nil},
		{"sudoers empty", parseSudoersFile, "", nil},
		{"sudoers cut header", parseSudoersFile, "present 0 0 44", nil},
		{"sudoers refused", parseSudoersFile, "sudo: a password is required\n", nil},
		{"sudoers stray line first", parseSudoersFile, "motd\npresent 0 0 440 regular file\n", nil},
		{"sudoers bad mode", parseSudoersFile, "present 0 0 9x9 regular file\n", nil},
		{"sudoers no newline", parseSudoersFile, "present 0 0 440 regular empty file", sudoersFile{Exists: true, Type: "regular empty file", Mode: 0o440}},
		{"probe empty", probeQuery().Parse, "", nil},
		{"probe nologin", probeQuery().Parse, "This account is currently not available.\n", nil},
		{"probe cut", probeQuery().Parse, "breakglass-probe user=", nil},
		{"probe cut before sudo", probeQuery().Parse, "breakglass-probe user=admin sudo=o", probeFacts{User: "admin"}},
		{"probe after motd, CRLF", probeQuery().Parse, "Welcome\r\nbreakglass-probe user=admin sudo=ok\r\n", probeFacts{User: "admin", Sudo: true}},
		{"probe a stray prefix", probeQuery().Parse, "echo breakglass-probe user=admin sudo=ok\n", nil},
		{"sshd empty", parseSSHDFacts, "", nil},
		{"sshd refused", parseSSHDFacts, "sudo: a password is required\n", nil},
		{"sshd cut in a file", parseSSHDFacts, cut(sshdOut, "file 0 0 644 0 /etc/ssh/sshd_config\n"), nil},
		{"sshd cut before end", parseSSHDFacts, sshdOut[:strings.Index(sshdOut, "end\n")], nil},
		{"sshd bad base64", parseSSHDFacts, strings.Replace(sshdOut, "\nend\n", "\n!!!\nend\n", 1), nil},
		{"sshd bad file line", parseSSHDFacts, strings.Replace(sshdOut, "file 0 0 644 0 /etc/ssh/sshd_config\n", "file 0 0 6x4 0 /etc/ssh/sshd_config\n", 1), nil},
		{"sshd stray lines", parseSSHDFacts, "Welcome to lab01\n" + strings.Replace(sshdOut, "dropin-dir\n", "dropin-dir\nsomething new 1\n", 1), sshdClean},
		{"secondary empty", parseSecondaryFacts, "", nil},
		{"secondary refused", parseSecondaryFacts, "sudo: a password is required\n", nil},
		{"secondary cut in a file", parseSecondaryFacts, cut(secOut, "file 0 0 644 0 /etc/breakglass/keys/bg-ops1\n"), nil},
		{"secondary bad dir line", parseSecondaryFacts, strings.Replace(secOut, "dir 0 0 755 /etc/breakglass\n", "dir 0 0 /etc/breakglass\n", 1), nil},
		{"secondary stray lines", parseSecondaryFacts, "Welcome to lab01\n" + strings.Replace(secOut, "pid1 bash\n", "pid1 bash\nsomething new 1\n", 1), secClean},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := tc.parse([]byte(tc.out))
			switch {
			case tc.want == nil && err == nil:
				t.Errorf("parsed %q as %+v, want an error", tc.out, v)
			case tc.want != nil && err != nil:
				t.Errorf("%q: %v", tc.out, err)
			case tc.want != nil && !reflect.DeepEqual(v, tc.want):
				t.Errorf("%q: got %+v, want %+v", tc.out, v, tc.want)
			}
		})
	}
}
