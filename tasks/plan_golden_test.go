package tasks

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/breakglass/breakglass/internal/engine"
	"github.com/breakglass/breakglass/internal/sshdconf"
)

// TestPlansGolden is facts → plan as data: each case is a module's
// arguments and host facts recorded on a real host (testdata/userfacts,
// or a fact query's raw output), and its golden file under
// testdata/plans holds the plan the module makes from them: every change
// and the exact commands of every step, or the error. No I/O: the
// modules' planning alone. Run with -update to rewrite the golden files
// after an intended change, and read the diff.
func TestPlansGolden(t *testing.T) {
	type planCase struct {
		name string
		plan func(t *testing.T) (string, error)
	}
	user := func(src, file, name string) func(t *testing.T) (string, error) {
		return func(t *testing.T) (string, error) {
			steps, err := mustUser(t, src).planSteps(userHostFrom(t, file, name), "admin")
			return renderSteps(steps), err
		}
	}
	key := func(src, file, name string, run authKeyRun) func(t *testing.T) (string, error) {
		return func(t *testing.T) (string, error) {
			steps, err := mustAuthorizedKey(t, src).planSteps(recordedFacts(t, file, name), run)
			return renderSteps(steps), err
		}
	}
	perms := func(check bool, files ...string) func(t *testing.T) (string, error) {
		return func(t *testing.T) (string, error) {
			var ufs []*UserFacts
			for _, f := range files {
				file, name, _ := strings.Cut(f, ":")
				ufs = append(ufs, recordedFacts(t, file, name))
			}
			steps, err := planPermissions(ufs, check)
			return renderSteps(steps), err
		}
	}
	sudoers := func(src, fact string) func(t *testing.T) (string, error) {
		return func(t *testing.T) (string, error) {
			s := mustSudoers(t, src)
			v, err := parseSudoersFile([]byte(fact))
			if err != nil {
				t.Fatalf("sudoers fact %q: %v", fact, err)
			}
			p, err := s.planChanges(v.(sudoersFile), true)
			if err != nil {
				return "", err
			}
			var b strings.Builder
			for _, c := range p.changes {
				fmt.Fprintf(&b, "- %s\n", c.What)
				if c.Before != "" || c.After != "" {
					fmt.Fprintf(&b, "  before: %q\n  after:  %q\n", c.Before, c.After)
				}
			}
			if p.install || p.remove {
				script, err := s.script(p, "admin")
				if err != nil {
					return b.String(), err
				}
				// The temp names hold a random part per run.
				script = runName.ReplaceAll(script, []byte("$1.RANDOM"))
				script = hereTag.ReplaceAll(script, []byte("BREAKGLASS_RANDOM"))
				fmt.Fprintf(&b, "script:\n%s", indent(string(script)))
			}
			return b.String(), nil
		}
	}
	// command: each guard's fact is a recorded output of its query
	// (testdata/facts/command_exists: yes or no); the plan in check mode,
	// then outside it when that differs.
	command := func(src string, recorded ...string) func(t *testing.T) (string, error) {
		return func(t *testing.T) (string, error) {
			m, err := decodeTask(t, NewCommand, src)
			if err != nil {
				return "", err
			}
			c := m.(*Command)
			var facts []any
			for i, q := range c.PlanQueries(Conn{}) {
				out, err := os.ReadFile(filepath.Join("testdata", "facts", "command_exists", recorded[i]+".namespace.txt"))
				if err != nil {
					t.Fatal(err)
				}
				v, err := q.Parse(out)
				if err != nil {
					t.Fatalf("%s: %v", q.Key, err)
				}
				facts = append(facts, v)
			}
			var b strings.Builder
			var plans [2]string
			for i, check := range []bool{true, false} {
				p, err := c.Plan(&Env{Check: check}, facts)
				if err != nil {
					return b.String(), err
				}
				plans[i] = renderPlan(p)
			}
			fmt.Fprintf(&b, "check mode:\n%s", indent(cmp.Or(plans[0], "(no change)\n")))
			if plans[1] == plans[0] {
				b.WriteString("apply: the same\n")
			} else {
				fmt.Fprintf(&b, "apply:\n%s", indent(plans[1]))
			}
			return b.String(), nil
		}
	}
	// verify_access: the facts other tasks gathered (recorded user facts,
	// "file:user") only order the logins; the playbook is in /play.
	verify := func(src string, users ...string) func(t *testing.T) (string, error) {
		return func(t *testing.T) (string, error) {
			v, err := decodeVerify(t, src)
			if err != nil {
				return "", err
			}
			env := &Env{Dir: "/play", Facts: &Facts{}}
			for _, u := range users {
				file, name, _ := strings.Cut(u, ":")
				env.Facts.Set(UserFactsKey(name), recordedFacts(t, file, name))
			}
			if qs := v.PlanQueries(env.Conn()); len(qs) > 0 {
				t.Errorf("verify_access gathers %d facts: verify would take another round trip", len(qs))
			}
			p, err := v.Plan(env, nil)
			if err != nil {
				return "", err
			}
			return renderPlan(p), nil
		}
	}
	// sshd plans from the sshd query's recorded output (facts/sshd),
	// edited by edit where a case needs a state not recorded; check
	// executes the plan in check mode on a host that answers nothing.
	sshd := func(src, recording string, edit func(*sshdFacts), check bool) func(t *testing.T) (string, error) {
		return func(t *testing.T) (string, error) {
			m, err := decodeTask(t, NewSSHD, src)
			if err != nil {
				return "", err
			}
			out, err := os.ReadFile(filepath.Join("testdata", "facts", "sshd", recording+".txt"))
			if err != nil {
				t.Fatal(err)
			}
			f := parseSSHDFactsT(t, string(out))
			if edit != nil {
				edit(f)
			}
			env := &Env{Diff: true, Check: check}
			p, err := m.(*SSHD).Plan(env, []any{f})
			if err != nil {
				return "", err
			}
			got := renderSSHDPlan(p)
			if check {
				res, _, err := engine.NewExecutor(noHost{t}, env).Execute(context.Background(), 0, nil, p)
				if err != nil {
					t.Fatalf("check mode: %v", err)
				}
				got += fmt.Sprintf("check mode: changed %v, runs nothing, reports:\n", res.Changed)
				for _, c := range res.Changes {
					got += "- " + c.What + "\n"
				}
			}
			return got, nil
		}
	}
	dropIn := func(name, content string) func(*sshdFacts) {
		return func(f *sshdFacts) {
			f.DropIns = append(f.DropIns, sshdFile{Path: SSHDDropInDir + "/" + name, Regular: true, Mode: 0o644, Content: content})
		}
	}
	// The emergency sshd from its facts recorded on a lab host
	// (testdata/facts/secondary_sshd, the task listening on the recorded
	// host's address when sshd -T told it), bg-ops1's account as
	// testdata/userfacts/ACCOUNT holds it.
	secondary := func(fact, account string, check, audit bool) func(t *testing.T) (string, error) {
		return func(t *testing.T) (string, error) {
			out, err := os.ReadFile(filepath.Join("testdata", "facts", "secondary_sshd", fact+".txt"))
			if err != nil {
				t.Fatal(err)
			}
			v, err := parseSecondaryFacts(out)
			if err != nil {
				t.Fatalf("secondary_sshd fact %s: %v", fact, err)
			}
			f := v.(*secondaryFacts)
			src := `{port: 2222, allow_users: [bg-ops1]}`
			if la := f.T["listenaddress"]; len(la) == 1 {
				ap, err := netip.ParseAddrPort(la[0])
				if err != nil {
					t.Fatal(err)
				}
				src = fmt.Sprintf(`{port: 2222, allow_users: [bg-ops1], listen: %s}`, ap.Addr())
			}
			s := linked(t, mustSecondary(t, src), "bg-ops1")
			if audit {
				s.Audit()
			}
			p, err := s.Plan(&Env{Host: "web01", Check: check, Diff: true}, []any{f, recordedAs(t, account, "bg-ops1")})
			if err != nil {
				return "", err
			}
			got := runName.ReplaceAllString(renderPlan(p), "$1.RANDOM")
			return hereTag.ReplaceAllString(got, "BREAKGLASS_RANDOM"), nil
		}
	}
	const recordedKeyBlob = recordedKey
	for _, tc := range []planCase{
		{"user-create", user(`{name: ghost, shell: /bin/bash, groups: [sudo], comment: "On call"}`, "missing", "ghost")},
		{"user-existing-unchanged", user(`{name: alice}`, "existing", "alice")},
		{"user-locked-repaired", user(`{name: carol}`, "locked", "carol")},
		{"user-aged-password", user(`{name: carol}`, "aged", "carol")},
		{"user-missing-home", user(`{name: erin}`, "nohome", "erin")},
		{"user-move-home", user(`{name: alice, home: /srv/alice, groups: [sudo, adm], comment: "Alice A"}`, "existing", "alice")},
		{"user-absent", user(`{name: alice, state: absent}`, "existing", "alice")},
		{"user-absent-control", user(`{name: admin, state: absent}`, "existing", "alice")},
		{"key-add", key(fmt.Sprintf(`{user: alice, key: %q}`, testKey(t, 1, "new@safe")), "existing", "alice", authKeyRun{controlUser: "admin"})},
		{"key-present", key(fmt.Sprintf(`{user: alice, key: %q}`, recordedKeyBlob), "existing", "alice", authKeyRun{controlUser: "admin"})},
		{"key-exclusive", key(fmt.Sprintf(`{user: alice, keys: [%q], exclusive: true}`, testKey(t, 2, "only@safe")), "existing", "alice", authKeyRun{controlUser: "admin"})},
		{"key-absent", key(fmt.Sprintf(`{user: alice, key: %q, state: absent}`, recordedKeyBlob), "existing", "alice", authKeyRun{controlUser: "admin"})},
		{"key-incident", key(fmt.Sprintf(`{user: bob, key: %q}`, recordedKeyBlob), "incident", "bob", authKeyRun{controlUser: "admin"})},
		{"key-new-user-check", key(fmt.Sprintf(`{user: ghost, key: %q}`, recordedKeyBlob), "missing", "ghost", authKeyRun{check: true})},
		{"key-etc-file", key(fmt.Sprintf(`{user: alice, key: %q}`, recordedKeyBlob), "etcakf", "alice", authKeyRun{controlUser: "admin"})},
		{"key-symlinked-dir", key(fmt.Sprintf(`{user: dave, key: %q}`, recordedKeyBlob), "symlink", "dave", authKeyRun{controlUser: "admin"})},
		{"key-none", key(fmt.Sprintf(`{user: alice, key: %q}`, recordedKeyBlob), "none", "alice", authKeyRun{controlUser: "admin"})},
		{"perms-incident", perms(false, "incident:bob")},
		{"perms-healthy", perms(false, "existing:alice")},
		{"perms-symlink", perms(false, "symlink:dave")},
		{"perms-missing-check", perms(true, "missing:ghost", "existing:alice")},
		{"perms-missing", perms(false, "missing:ghost")},
		{"sudoers-create", sudoers(`{name: breakglass, users: [bg-ops1, bg-ops2]}`, "absent\n")},
		{"sudoers-wrong-mode", sudoers(`{name: breakglass, users: [bg-ops1]}`, "present 1000 0 666 regular file\n# old\n")},
		{"sudoers-absent", sudoers(`{name: breakglass, state: absent}`, "present 0 0 440 regular file\nold\n")},
		{"sudoers-directory", sudoers(`{name: breakglass, users: [bg-ops1]}`, "present 0 0 755 directory\n")},
		{"sudoers-leftovers", sudoers(`{name: breakglass, users: [bg-ops1]}`, "leftover .breakglass.breakglass-new.0123456789ab\nleftover .breakglass.breakglass-old.0123456789ab\npresent 0 0 440 regular file\n# managed by breakglass (sudoers task \"breakglass\"): changes made here are overwritten\nbg-ops1 ALL=(ALL) ALL\n")},
		{"secondary-fresh-namespace", secondary("absent.namespace", "existing", false, false)},
		{"secondary-fresh-trixie", secondary("absent.trixie", "missing", false, false)},
		{"secondary-nothing-namespace", secondary("installed.namespace", "existing", false, false)},
		{"secondary-nothing-trixie", secondary("installed.trixie", "existing", false, false)},
		{"secondary-drift-trixie", secondary("partial.trixie", "existing", false, false)},
		{"secondary-check-namespace", secondary("partial.namespace", "existing", true, false)},
		{"secondary-check-fresh-trixie", secondary("absent.trixie", "missing", true, false)},
		{"secondary-audit-namespace", secondary("partial.namespace", "locked", true, true)},
		{"secondary-audit-installed-trixie", secondary("installed.trixie", "existing", true, true)},
		{"secondary-privsep-namespace", secondary("noprivsep.namespace", "existing", false, false)},
		{"secondary-privsep-check-trixie", secondary("noprivsep.trixie", "existing", true, false)},
		{"command-plain", command(`{cmd: "systemctl restart ssh"}`)},
		{"command-creates-present", command(`{cmd: "touch /etc/x", creates: /etc/x, chdir: /tmp}`, "yes")},
		{"command-creates-absent", command(`{cmd: "touch /etc/x", creates: /etc/x}`, "no")},
		{"command-removes-absent", command(`{cmd: "rm /etc/y", removes: /etc/y}`, "dangling")},
		{"command-both-guards", command(`{cmd: "mv /etc/y /etc/x", creates: /etc/x, removes: /etc/y}`, "no", "yes")},
		{"verify-defaults", verify(`{logins: [{user: bg-ops1, key_file: keys/ops1}, {user: bg-ops2, key_file: keys/ops2}]}`)},
		{"verify-likely-refused-last", verify(`{sudo: true, min_working: 1, parallel: 3, logins: [{user: ghost, key_file: k}, {user: bob, key_file: k}, {user: alice, key_file: /keys/alice}], paths: [direct, {port: 2222}, {jump: bastion}, {address: 192.0.2.7}]}`,
			"missing:ghost", "incident:bob", "existing:alice")},
		{"sshd-create-dropin", sshd(`{settings: {LogLevel: VERBOSE, AllowUsers: [admin, bg-ops1]}}`, "default.namespace", nil, false)},
		{"sshd-create-dropin-systemd", sshd(`{settings: {PasswordAuthentication: false, MaxStartups: "20:30:60"}, revert_after: 30}`, "default.trixie", nil, false)},
		{"sshd-unchanged", sshd(`{settings: {LogLevel: VERBOSE}}`, "default.trixie",
			dropIn("00-breakglass.conf", "# Managed by breakglass (sshd task): changes made here are overwritten.\n# sshd reads the drop-ins in name order and the first value it reads wins.\nLogLevel VERBOSE\n"), false)},
		{"sshd-changed-setting", sshd(`{file: 10-bg.conf, settings: {MaxStartups: "10:30:100", PerSourceMaxStartups: 2}}`, "dropin.namespace", nil, false)},
		{"sshd-earlier-value-wins", sshd(`{file: 50-site.conf, settings: {PerSourceMaxStartups: 5}}`, "dropin.trixie", nil, false)},
		{"sshd-symlinked-dropin", sshd(`{file: 20-link.conf, settings: {LogLevel: VERBOSE}}`, "dropin.namespace", nil, false)},
		{"sshd-earlier-match-block", sshd(`{settings: {LogLevel: VERBOSE}}`, "default.namespace",
			dropIn("0-match.conf", "Match User bob\n\tLogLevel INFO\n"), false)},
		{"sshd-no-include-block", sshd(`{settings: {LogLevel: VERBOSE}}`, "default.namespace", func(f *sshdFacts) {
			f.Main.Content = strings.Replace(f.Main.Content, "Include /etc/ssh/sshd_config.d/*.conf\n", "", 1)
		}, false)},
		{"sshd-broken-config", sshd(`{settings: {LogLevel: VERBOSE}}`, "broken.trixie", nil, false)},
		{"sshd-refused-keyword", sshd(`{settings: {PidFile: /run/other.pid}}`, "default.namespace", nil, false)},
		{"sshd-check", sshd(`{settings: {LogLevel: VERBOSE}}`, "default.trixie", nil, true)},
		// Edited: /run/sshd missing, which the install creates on the way.
		{"sshd-check-no-privsep", sshd(`{settings: {LogLevel: VERBOSE}}`, "default.trixie", func(f *sshdFacts) { f.PrivsepMissing = true }, true)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.plan(t)
			if err != nil {
				got += "error: " + err.Error() + "\n"
			}
			if got == "" {
				got = "(no change)\n"
			}
			planGolden(t, tc.name, got)
		})
	}
}

// renderSteps writes a plan's steps: each change, the file content a step
// writes, and the commands the step runs.
func renderSteps(steps []hostStep) string {
	var b strings.Builder
	for _, s := range steps {
		fmt.Fprintf(&b, "- %s\n", s.change.What)
		if s.change.Before != "" || s.change.After != "" {
			fmt.Fprintf(&b, "  before: %q\n  after:  %q\n", s.change.Before, s.change.After)
		}
		if s.after != nil {
			fmt.Fprintf(&b, "  leaves: %d:%d %o\n", s.after.UID, s.after.GID, s.after.Mode)
		}
		b.WriteString(indent(s.cmd))
	}
	return b.String()
}

// renderPlan writes a whole plan: its steps (as renderSteps, but what a
// step leaves is the module's, not the plan's), the guard, the
// facts it makes stale or knows, its ops and its findings.
func renderPlan(p *Plan) string {
	var b strings.Builder
	for _, s := range p.Steps {
		fmt.Fprintf(&b, "- %s\n", s.Change.What)
		if s.Change.Before != "" || s.Change.After != "" {
			fmt.Fprintf(&b, "  before: %q\n  after:  %q\n", s.Change.Before, s.Change.After)
		}
		b.WriteString(indent(s.Cmd))
	}
	if g := p.Guard; g != nil {
		fmt.Fprintf(&b, "guard: prove the ways in without %d login(s) %v, else %q\n", len(g.LeftOut), g.LeftOut, g.Refusal)
		if len(g.Doubt) > 0 {
			fmt.Fprintf(&b, "  prove last: %s\n", g.Doubt)
		}
	}
	if len(p.Stale) > 0 {
		fmt.Fprintf(&b, "stale: %s\n", strings.Join(p.Stale, " "))
	}
	if len(p.Known) > 0 {
		keys := make([]string, 0, len(p.Known))
		for k := range p.Known {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		fmt.Fprintf(&b, "known: %s\n", strings.Join(keys, " "))
	}
	if p.Again {
		b.WriteString("again: once the ops ran, forget the stale facts, gather and plan once more\n")
	}
	for _, op := range p.Ops {
		fmt.Fprintf(&b, "op (read-only %v):\n%s", op.ReadOnly(), indent(op.String()))
	}
	for _, f := range p.Findings {
		fmt.Fprintf(&b, "finding %s %s %s %s: %s\n  fix: %s\n", f.ID, f.Severity, f.User, f.Path, f.Detail, f.Fix)
	}
	return b.String()
}

// renderSSHDPlan is renderPlan with the fixed bodies the sshd scripts
// embed (shellchecked .sh files, run on the lab) named rather than
// repeated in every golden file.
func renderSSHDPlan(p *Plan) string {
	got := renderPlan(p)
	for _, b := range []struct{ name, body string }{
		{"internal/sshdconf/sshd.sh", sshdconf.Shell},
		{"tasks/sshd_reload.sh", sshdReloadScript},
		{"tasks/sshd_install.sh", sshdInstallBody},
		{"tasks/sshd_after_restore.sh", sshdAfterRestoreScript},
		{"internal/engine/txn_prelude.sh", engine.TxnPrelude},
		{"internal/engine/nofollow.sh", engine.Nofollow},
	} {
		// An op's scripts are indented twice: by the op and by renderPlan.
		got = strings.ReplaceAll(got, indent(indent(b.body)), indent(indent("# (the body of "+b.name+")")))
	}
	return got
}

// noHost is a host that must not be contacted.
type noHost struct{ t *testing.T }

func (h noHost) Run(_ context.Context, cmd string, _ []byte) ([]byte, error) {
	h.t.Errorf("ran %q on the host", cmd)
	return nil, errors.New("no host")
}

var hereTag = regexp.MustCompile(`BREAKGLASS_[0-9a-f]{16,}`)

var runName = regexp.MustCompile(`(\.breakglass-(?:tmp|new|old))\.[0-9a-f]{12}`)

// indent indents every line of s by four spaces.
func indent(s string) string {
	if s == "" {
		return ""
	}
	return "    " + strings.ReplaceAll(strings.TrimSuffix(s, "\n"), "\n", "\n    ") + "\n"
}

func planGolden(t *testing.T, name, got string) {
	t.Helper()
	golden(t, filepath.Join("testdata", "plans", name+".golden"), got)
}

// golden compares got with the golden file p, or rewrites p under -update.
// A difference is reported from its first differing line.
func golden(t *testing.T, p, got string) {
	t.Helper()
	if f := flag.Lookup("update"); f != nil && f.Value.String() == "true" {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got == string(want) {
		return
	}
	g, w := strings.Split(got, "\n"), strings.Split(string(want), "\n")
	for i := range max(len(g), len(w)) {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl {
			t.Errorf("%s differs from the golden file (-update rewrites it; read the diff) from line %d:\n got: %q\nwant: %q", p, i+1, gl, wl)
			return
		}
	}
}

// recordedAs is the account recorded in testdata/userfacts/NAME.txt, as
// the facts of user (its name changed in the header and the passwd
// entry, nothing else).
func recordedAs(t *testing.T, name, user string) *UserFacts {
	t.Helper()
	out, err := os.ReadFile(filepath.Join("testdata", "userfacts", name+".txt"))
	if err != nil {
		t.Fatal(err)
	}
	head, rest, _ := strings.Cut(string(out), "\n")
	fields := strings.Fields(head)
	if len(fields) != 3 || fields[0] != "breakglass-user-facts" {
		t.Fatalf("%s: header %q", name, head)
	}
	rest = strings.Replace(rest, "\npasswd "+fields[2]+":", "\npasswd "+user+":", 1)
	uf, err := ParseUserFacts(user, []byte(fields[0]+" "+fields[1]+" "+user+"\n"+rest))
	if err != nil {
		t.Fatalf("parse %s as %s: %v", name, user, err)
	}
	return uf
}
