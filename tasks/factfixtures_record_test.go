package tasks

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/breakglass/breakglass/internal/engine"
	"github.com/breakglass/breakglass/internal/lab"
	"github.com/breakglass/breakglass/internal/shell"
)

var recordFacts = flag.Bool("record", false, "run every fact query on lab hosts and save its output under testdata/facts (TestRecordFacts)")

var recordOnly = flag.String("record-only", "", "with -record: only the recordings whose DIR/NAME starts with one of these comma-separated prefixes")

// factRecording is one recorded fact query: the host is put in a state by
// setup, the query runs as root, undo puts the host back.
type factRecording struct {
	dir, name   string // testdata/facts/DIR/NAME.KIND.txt
	setup, undo string
	// prepare, when set, puts the host in its state after setup, in Go
	// (a module's run).
	prepare func(ctx context.Context, t *testing.T, h *lab.Host)
	query   func(t *testing.T, h *lab.Host) Query
	systemd bool   // recorded on a trixie host too: the output differs under systemd
	as      string // run by this user in a login shell (su -), not root
}

// probeQuery is engine.VerifyCommand as a query: what a verify login prints.
func probeQuery() Query {
	return Query{Key: "probe", Script: engine.VerifyCommand, Parse: func(out []byte) (any, error) {
		u, sudo, ok := engine.ParseProbe(out)
		if !ok {
			return nil, fmt.Errorf("no probe line in %q", out)
		}
		return probeFacts{User: u, Sudo: sudo}, nil
	}}
}

type probeFacts struct {
	User string
	Sudo bool
}

// recorderSecondary is the emergency sshd whose facts are recorded.
func recorderSecondary(t *testing.T) *SecondarySSHD {
	return linked(t, mustSecondary(t, `{port: 2222, allow_users: [bg-ops1]}`), "bg-ops1")
}

// recorderSecondaryOn is recorderSecondary listening on addr, h's own
// address: the one it is installed and started with (its facts query is
// the same).
func recorderSecondaryOn(t *testing.T, addr string) *SecondarySSHD {
	return linked(t, mustSecondary(t, fmt.Sprintf(`{port: 2222, allow_users: [bg-ops1], listen: %s}`, addr)), "bg-ops1")
}

// secondaryUndo removes what installing recorderSecondaryOn made.
const secondaryUndo = `if [ -d /run/systemd/system ]; then systemctl disable --now breakglass-sshd.service >/dev/null 2>&1
rm -f /etc/systemd/system/breakglass-sshd.service /etc/systemd/system/ssh.service.d/50-breakglass-keep-privsep-dir.conf; systemctl daemon-reload
else kill "$(cat /run/sshd-breakglass.pid)"; update-rc.d -f breakglass-sshd remove >/dev/null 2>&1; rm -f /etc/init.d/breakglass-sshd /run/sshd-breakglass.pid; fi
rm -rf /etc/breakglass /etc/ssh/sshd_config_breakglass /etc/ssh/sshd_config_breakglass.breakglass-bak`

func factRecordings() []factRecording {
	q := func(qq Query) func(*testing.T, *lab.Host) Query {
		return func(*testing.T, *lab.Host) Query { return qq }
	}
	sudoers := func(t *testing.T, _ *lab.Host) Query {
		return mustSudoers(t, "{name: ops, users: [bg-ops9]}").query()
	}
	secondary := func(t *testing.T, _ *lab.Host) Query { return recorderSecondary(t).query() }
	// The user facts as verify_access's login from 127.0.0.1 sees them.
	userFacts := func(name string) func(*testing.T, *lab.Host) Query {
		return func(_ *testing.T, h *lab.Host) Query {
			return UserFactsQuery(name, Conn{Client: "127.0.0.1", Server: h.Addr, Port: 22})
		}
	}
	return []factRecording{
		{dir: "path", name: "binsh", query: q(PathQuery("/bin/sh"))},
		{dir: "path", name: "dir", query: q(PathQuery("/root"))},
		{dir: "path", name: "missing", query: q(PathQuery("/nonexistent/shell"))},
		{dir: "path", name: "space", setup: "mkdir -p '/srv/a b' && chown 1234:5678 '/srv/a b' && chmod 2750 '/srv/a b'", undo: "rm -rf '/srv/a b'", query: q(PathQuery("/srv/a b"))},
		{dir: "path", name: "dangling", setup: "ln -s /nonexistent /srv/dangling", undo: "rm -f /srv/dangling", query: q(PathQuery("/srv/dangling"))},
		{dir: "group", name: "present", query: q(GroupQuery("sudo"))},
		{dir: "group", name: "absent", query: q(GroupQuery("nope"))},
		{dir: "command_exists", name: "yes", query: q(commandExistsQuery("/etc/passwd"))},
		{dir: "command_exists", name: "no", query: q(commandExistsQuery("/nonexistent"))},
		{dir: "command_exists", name: "dangling", setup: "ln -s /nonexistent /srv/dangling", undo: "rm -f /srv/dangling", query: q(commandExistsQuery("/srv/dangling"))},
		{dir: "sudoers", name: "absent", query: sudoers},
		{dir: "sudoers", name: "regular", setup: "printf '# ops\\n%%ops ALL=(ALL) ALL\\n' >/etc/sudoers.d/ops && chmod 0440 /etc/sudoers.d/ops", undo: "rm -f /etc/sudoers.d/ops", query: sudoers},
		{dir: "sudoers", name: "empty", setup: ": >/etc/sudoers.d/ops && chown 1000:1000 /etc/sudoers.d/ops && chmod 0644 /etc/sudoers.d/ops", undo: "rm -f /etc/sudoers.d/ops", query: sudoers},
		{dir: "sudoers", name: "directory", setup: "mkdir -m 0755 /etc/sudoers.d/ops", undo: "rmdir /etc/sudoers.d/ops", query: sudoers},
		{dir: "sudoers", name: "symlink", setup: "printf 'root ALL=(ALL) ALL\\n' >/srv/x && ln -s /srv/x /etc/sudoers.d/ops", undo: "rm -f /etc/sudoers.d/ops /srv/x", query: sudoers},
		{dir: "sudoers", name: "leftovers", setup: "cd /etc/sudoers.d && printf '# ops\\n' >ops && chmod 0440 ops && ln ops .ops.breakglass-new.0123456789ab && ln -s /srv/x .ops.breakglass-old.0123456789ab && : >.ops.breakglass-new.0123 && mkdir .ops.breakglass-old.aaaaaaaaaaaa",
			undo: "cd /etc/sudoers.d && rm -rf ops .ops.breakglass-new.0123456789ab .ops.breakglass-old.0123456789ab .ops.breakglass-new.0123 .ops.breakglass-old.aaaaaaaaaaaa", query: sudoers},
		{dir: "probe", name: "sudo", as: "admin", query: q(probeQuery())},
		{dir: "probe", name: "nosudo", as: "bg-rec1", setup: "useradd -m -s /bin/bash bg-rec1", undo: "userdel -r bg-rec1 2>/dev/null", query: q(probeQuery())},
		{dir: "probe", name: "sudopassword", as: "bg-rec2",
			setup: "useradd -m -s /bin/bash bg-rec2 && printf 'bg-rec2 ALL=(ALL) ALL\\n' >/etc/sudoers.d/bg-rec2 && chmod 0440 /etc/sudoers.d/bg-rec2",
			undo:  "userdel -r bg-rec2 2>/dev/null; rm -f /etc/sudoers.d/bg-rec2", query: q(probeQuery())},
		{dir: "userfacts", name: "admin", systemd: true, query: userFacts("admin")},
		{dir: "userfacts", name: "ghost", systemd: true, query: userFacts("ghost")},
		{dir: "sshd", name: "default", systemd: true, query: q(sshdQuery())},
		{dir: "sshd", name: "dropin", systemd: true,
			setup: "printf 'MaxStartups 3:50:9\\nPerSourceMaxStartups 2\\n' >/etc/ssh/sshd_config.d/10-bg.conf && ln -s /srv/x /etc/ssh/sshd_config.d/20-link.conf && printf 'LogLevel INFO\\n' >/srv/x && mkdir /etc/ssh/sshd_config.d/30-dir",
			undo:  "rm -rf /etc/ssh/sshd_config.d/10-bg.conf /etc/ssh/sshd_config.d/20-link.conf /etc/ssh/sshd_config.d/30-dir /srv/x", query: q(sshdQuery())},
		{dir: "sshd", name: "broken", systemd: true, setup: "printf 'Bogus yes\\n' >/etc/ssh/sshd_config.d/10-bg.conf", undo: "rm -f /etc/ssh/sshd_config.d/10-bg.conf", query: q(sshdQuery())},
		{dir: "secondary_sshd", name: "absent", systemd: true, query: secondary},
		{dir: "secondary_sshd", name: "partial", systemd: true,
			setup: `mkdir -p -m 0755 /etc/breakglass /etc/breakglass/keys && mkdir -m 0700 /etc/breakglass/hostkeys &&
cp /etc/ssh/ssh_host_ed25519_key /etc/breakglass/hostkeys/ && printf 'stale\n' >/etc/breakglass/hostkeys/ssh_host_ecdsa_key &&
chmod 0600 /etc/breakglass/hostkeys/* && printf 'ssh-ed25519 AAAA bg-ops1\n' >/etc/breakglass/keys/bg-ops1 &&
printf 'x\n' >/etc/breakglass/keys/.hidden && printf 'Port 2222\n' >/etc/ssh/sshd_config_breakglass`,
			undo: "rm -rf /etc/breakglass /etc/ssh/sshd_config_breakglass", query: secondary},
		// sshd -T cannot run without its privilege separation directory.
		{dir: "secondary_sshd", name: "noprivsep", systemd: true, setup: "rm -rf /run/sshd", undo: "mkdir -p -m 0755 /run/sshd", query: secondary},
		{dir: "secondary_sshd", name: "installed", systemd: true, undo: secondaryUndo, query: secondary,
			prepare: func(ctx context.Context, t *testing.T, h *lab.Host) {
				if _, err := runModule(ctx, h.Runner(), &Env{Host: h.Name, Facts: &Facts{}}, recorderSecondaryOn(t, h.Addr)); err != nil {
					t.Fatalf("install the emergency sshd: %v", err)
				}
			}},
	}
}

// TestRecordFacts rewrites testdata/facts: go test ./tasks -run TestRecordFacts -record
func TestRecordFacts(t *testing.T) {
	if !*recordFacts {
		t.Skip("only with -record")
	}
	for _, k := range []lab.Kind{lab.Namespace, lab.Trixie} {
		t.Run(string(k), func(t *testing.T) {
			t.Parallel()
			h := lab.NewKind(t, k, 1).Hosts[0]
			for _, rc := range factRecordings() {
				if k != lab.Namespace && !rc.systemd || !recordWanted(rc.dir+"/"+rc.name) {
					continue
				}
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				if rc.setup != "" {
					if _, err := h.Exec(ctx, rc.setup, nil); err != nil {
						t.Fatalf("%s/%s setup: %v", rc.dir, rc.name, err)
					}
				}
				if rc.prepare != nil {
					rc.prepare(ctx, t, h)
				}
				qq := rc.query(t, h)
				var out []byte
				var err error
				if rc.as != "" {
					out, err = h.Exec(ctx, "su - "+shell.Quote(rc.as)+" -s /bin/sh -c "+shell.Quote(qq.Script), nil)
				} else {
					out, err = h.Runner().Run(ctx, "/bin/sh -s", []byte(qq.Script))
				}
				if err != nil {
					t.Fatalf("%s/%s: %v", rc.dir, rc.name, err)
				}
				if rc.undo != "" {
					if _, err := h.Exec(ctx, rc.undo, nil); err != nil {
						t.Fatalf("%s/%s undo: %v", rc.dir, rc.name, err)
					}
				}
				cancel()
				if _, err := qq.Parse(out); err != nil {
					t.Errorf("%s/%s: %v", rc.dir, rc.name, err)
				}
				p := filepath.Join("testdata", "facts", rc.dir, rc.name+"."+string(k)+".txt")
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, out, 0o644); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// recordWanted says whether -record-only selects the recording dir/name.
func recordWanted(name string) bool {
	if *recordOnly == "" {
		return true
	}
	for _, p := range strings.Split(*recordOnly, ",") {
		if p != "" && strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}
