package tasks

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/breakglass/breakglass/internal/engine"
	"github.com/breakglass/breakglass/internal/lab"
	"github.com/breakglass/breakglass/internal/shell"
	"github.com/breakglass/breakglass/internal/sshdconf"
	"github.com/breakglass/breakglass/internal/wire"
)

// testConn is the connection the recorded facts in testdata/userfacts were
// gathered for (see testdata/userfacts/README.md).
var testConn = Conn{Client: "10.0.0.5", Server: "10.0.0.1", Port: 22}

// recordedFacts parses testdata/userfacts/NAME.txt, gathered for user.
func recordedFacts(t testing.TB, name, user string) *UserFacts {
	t.Helper()
	out, err := os.ReadFile(filepath.Join("testdata", "userfacts", name+".txt"))
	if err != nil {
		t.Fatal(err)
	}
	uf, err := ParseUserFacts(user, out)
	if err != nil {
		t.Fatalf("parse %s: %v", name, err)
	}
	return uf
}

// testEnv is an Env for testConn whose Facts already hold ufs.
func testEnv(ufs ...*UserFacts) *Env {
	env := &Env{
		Host: "test", ControlUser: "admin",
		ClientAddr: testConn.Client, ServerAddr: testConn.Server, ServerPort: testConn.Port,
		Facts: &Facts{},
	}
	for _, uf := range ufs {
		env.Facts.Set(UserFactsKey(uf.Name), uf)
	}
	return env
}

// fakeRunner records commands. It answers fact batches from canned
// outputs (users: recorded facts by user name; paths: stat records;
// groups: existence) and apply scripts by printing every step's done
// marker, or failing after failAfter steps.
type fakeRunner struct {
	mu        sync.Mutex
	calls     []fakeCall
	users     map[string][]byte
	paths     map[string]PathStat
	groups    map[string]bool
	failAfter int // apply scripts: fail after this many steps; <0 never
}

type fakeCall struct {
	cmd   string
	stdin []byte
}

func newFakeRunner() *fakeRunner {
	return &fakeRunner{users: map[string][]byte{}, paths: map[string]PathStat{}, groups: map[string]bool{}, failAfter: -1}
}

func (f *fakeRunner) Run(_ context.Context, cmd string, stdin []byte) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fakeCall{cmd: cmd, stdin: stdin})
	switch {
	case cmd == "/bin/sh -s" && strings.HasPrefix(string(stdin), "{\n"+engine.ApplyPrelude):
		var out strings.Builder
		nonce, bodies, _ := wire.Parse(stdin)
		for i := range stepBodies(bodies) {
			if f.failAfter >= 0 && i >= f.failAfter {
				out.WriteString(wire.Begun(nonce, i, ""))
				return []byte(out.String()), errors.New("exit status 1: fake failure")
			}
			out.WriteString(wire.Reply(nonce, i, "", 0))
		}
		return []byte(out.String()), nil
	case cmd == "/bin/sh -s":
		return f.answerFacts(string(stdin))
	}
	return nil, fmt.Errorf("fake runner: unexpected command %q", cmd)
}

func (f *fakeRunner) answerFacts(batch string) ([]byte, error) {
	var out strings.Builder
	nonce, scripts, ok := wire.Parse([]byte(batch))
	if !ok {
		return nil, errors.New("fake runner: not a fact batch")
	}
	for idx, script := range scripts {
		var body string
		switch {
		case strings.HasPrefix(script, "u="):
			name := strings.Fields(strings.TrimPrefix(script, "u="))[0]
			rec, ok := f.users[name]
			if !ok {
				return nil, fmt.Errorf("fake runner: no facts for user %s", name)
			}
			body = string(rec)
		case strings.HasPrefix(script, "p="):
			p := unquote(strings.TrimPrefix(strings.SplitN(script, "\n", 2)[0], "p="))
			st, ok := f.paths[p]
			if ok {
				body = fmt.Sprintf("%d %d %x %s\n", st.UID, st.GID, st.Mode, p)
			} else {
				body = "- - - " + p + "\n"
			}
		case strings.HasPrefix(script, "g="):
			g := unquote(strings.TrimPrefix(strings.SplitN(script, "\n", 2)[0], "g="))
			body = "absent\n"
			if f.groups[g] {
				body = "present\n"
			}
		default:
			return nil, fmt.Errorf("fake runner: unknown query %.40q", script)
		}
		out.WriteString(wire.Reply(nonce, idx, body, 0))
	}
	return []byte(out.String()), nil
}

// stepBodies are the bodies of an apply script's steps: the parts before
// the users' facts it reads again (which fakes leave unanswered, so they
// are gathered again).
func stepBodies(bodies []string) []string {
	for i, b := range bodies {
		if strings.HasPrefix(b, "u=") {
			return bodies[:i]
		}
	}
	return bodies
}

// applied returns the apply scripts the runner ran.
func (f *fakeRunner) applied() []fakeCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []fakeCall
	for _, c := range f.calls {
		if c.cmd == "/bin/sh -s" && strings.HasPrefix(string(c.stdin), "{\n"+engine.ApplyPrelude) {
			out = append(out, c)
		}
	}
	return out
}

// unquote undoes shell.Quote for one word.
func unquote(s string) string {
	if strings.HasPrefix(s, "'") && strings.HasSuffix(s, "'") {
		return strings.ReplaceAll(s[1:len(s)-1], `'\''`, `'`)
	}
	return s
}

// shellWords runs cmd with /bin/sh, every command it calls replaced by a
// function printing its arguments, and returns what each call received:
// the proof that no argument is re-parsed by the shell.
func shellWords(t *testing.T, cmd string) [][]string {
	t.Helper()
	var stubs strings.Builder
	for _, name := range []string{"useradd", "usermod", "userdel", "chage", "chown", "mkdir", "bg_chmod", "bg_chown", "bg_mkdir", "bg_mkparents", "bg_write"} {
		fmt.Fprintf(&stubs, "%s() { printf '%%s\\037' %s \"$@\"; printf '\\036'; }\n", name, name)
	}
	out, err := exec.Command("/bin/sh", "-c", stubs.String()+cmd).Output()
	if err != nil {
		t.Fatalf("sh -c %q: %v", cmd, err)
	}
	var calls [][]string
	for _, c := range strings.Split(strings.TrimSuffix(string(out), "\x1e"), "\x1e") {
		calls = append(calls, strings.Split(strings.TrimSuffix(c, "\x1f"), "\x1f"))
	}
	return calls
}

func TestParseUserFacts(t *testing.T) {
	alice := recordedFacts(t, "existing", "alice")
	if !alice.Exists || alice.UID != 1001 || alice.GID != 1001 || alice.Home != "/home/alice" || alice.Shell != "/bin/bash" {
		t.Errorf("passwd: got %+v", alice)
	}
	if !alice.ShellStat.Executable() || !alice.HomeStat.IsDir() || alice.HomeStat.Perm() != 0o755 || alice.HomeReal != "/home/alice" {
		t.Errorf("stats: shell %+v home %+v real %q", alice.ShellStat, alice.HomeStat, alice.HomeReal)
	}
	if got := strings.Join(alice.Groups, ","); got != "alice" || len(alice.GIDs) != 1 || alice.GIDs[0] != 1001 {
		t.Errorf("groups: %v %v", alice.Groups, alice.GIDs)
	}
	if sp := alice.Shadow; sp == nil || sp.Password != PasswordStar || sp.LastChange != alice.Today || sp.Max != 99999 || sp.Inactive != -1 || sp.Expire != -1 || sp.Ageing() {
		t.Errorf("shadow: %+v", alice.Shadow)
	}
	if alice.Today != 20782 || alice.Conn != testConn {
		t.Errorf("today %d conn %+v", alice.Today, alice.Conn)
	}
	c := alice.SSHD
	if !c.StrictModes || !c.UsePAM || !c.PubkeyAuthentication || c.PermitRootLogin != "without-password" || c.MaxAuthTries != 6 || c.AuthenticationMethods != "any" {
		t.Errorf("sshd: %+v", c)
	}
	if got := strings.Join(c.AuthorizedKeysFile, " "); got != ".ssh/authorized_keys .ssh/authorized_keys2" {
		t.Errorf("authorizedkeysfile: %q", got)
	}
	if len(c.Values["acceptenv"]) != 2 || c.Get("nosuchkeyword") != "" {
		t.Errorf("values: acceptenv %q", c.Values["acceptenv"])
	}
	if len(alice.KeyFiles) != 2 {
		t.Fatalf("key files: %+v", alice.KeyFiles)
	}
	k := alice.KeyFiles[0]
	if k.Pattern != ".ssh/authorized_keys" || k.Path != "/home/alice/.ssh/authorized_keys" || k.Real != k.Path || !k.File().IsRegular() || k.File().Perm() != 0o600 {
		t.Errorf("key file: %+v", k)
	}
	if !strings.HasPrefix(string(k.Content), "# managed by hand\nssh-ed25519 AAAA") {
		t.Errorf("content: %q", k.Content)
	}
	if k2 := alice.KeyFiles[1]; k2.File().Exists || k2.Content != nil {
		t.Errorf("authorized_keys2 should be missing: %+v", k2)
	}

	ghost := recordedFacts(t, "missing", "ghost")
	if ghost.Exists || ghost.UID != -1 || ghost.Home != "/home/ghost" || ghost.HomeStat.Exists || ghost.Shadow != nil {
		t.Errorf("missing user: %+v", ghost)
	}
	if len(ghost.KeyFiles) != 2 || ghost.KeyFiles[0].Path != "/home/ghost/.ssh/authorized_keys" {
		t.Errorf("missing user key files: %+v", ghost.KeyFiles)
	}

	carol := recordedFacts(t, "locked", "carol")
	if sp := carol.Shadow; sp.Password != PasswordLocked || sp.LastChange != 0 || sp.Max != 90 || !sp.Ageing() || sp.Expire != 19000 || !sp.KeyOnly() {
		t.Errorf("locked shadow: %+v", sp)
	}
	if carol.ShellStat.Exists || carol.ShellStat.Path != "/nonexistent/shell" {
		t.Errorf("missing shell: %+v", carol.ShellStat)
	}
	if sp := recordedFacts(t, "aged", "carol").Shadow; sp.Password != PasswordHash || sp.KeyOnly() || sp.Inactive != 5 {
		t.Errorf("aged shadow: %+v", sp)
	}

	broken := recordedFacts(t, "broken", "alice")
	if err := broken.SSHDKnown(); !errors.Is(err, ErrSSHDConfig) || !strings.Contains(err.Error(), "Bad configuration option: Bogus") || !strings.Contains(err.Error(), "exit status 255") {
		t.Errorf("broken sshd config: %v", err)
	}
	noconn := recordedFacts(t, "noconn", "alice")
	if err := noconn.SSHDKnown(); !errors.Is(err, ErrSSHDConfig) || noconn.Conn != (Conn{}) || len(noconn.KeyFiles) != 0 {
		t.Errorf("no connection: %v %+v", err, noconn.Conn)
	}
	if err := alice.SSHDKnown(); err != nil {
		t.Errorf("alice: %v", err)
	}

	if none := recordedFacts(t, "none", "alice"); len(none.KeyFiles) != 0 || none.SSHDKnown() != nil {
		t.Errorf("AuthorizedKeysFile none: %+v", none.KeyFiles)
	}
	if bad := recordedFacts(t, "badtoken", "alice"); len(bad.KeyFiles) != 1 || bad.KeyFiles[0].Pattern != ".ssh/k_%q" || bad.KeyFiles[0].Path != "" {
		t.Errorf("unknown token: %+v", bad.KeyFiles)
	}
	m := recordedFacts(t, "matchaddr", "alice")
	if len(m.KeyFiles) != 2 || m.KeyFiles[0].Path != "/home/alice/.ssh/from-admin-net" || m.KeyFiles[1].Path != "/home/alice/.ssh/alice.keys" {
		t.Errorf("Match Address key files: %+v", m.KeyFiles)
	}
}

func TestStrictModesWalk(t *testing.T) {
	paths := func(w []PathStat) string {
		var p []string
		for _, s := range w {
			p = append(p, s.Path)
		}
		return strings.Join(p, " ")
	}
	for _, tc := range []struct {
		file, user string
		want       string
		inHome     bool
	}{
		{"existing", "alice", "/home/alice/.ssh/authorized_keys /home/alice/.ssh /home/alice", true},
		{"incident", "bob", "/home/bob/.ssh/authorized_keys /home/bob/.ssh /home/bob", true},
		// ~/.ssh is a symlink out of home: sshd resolves it and walks to /.
		{"symlink", "dave", "/srv/keys/dave/authorized_keys /srv/keys/dave /srv/keys /srv /", false},
		{"etcakf", "alice", "/etc/ssh/authorized_keys/alice /etc/ssh/authorized_keys /etc/ssh /etc /", false},
	} {
		t.Run(tc.file, func(t *testing.T) {
			uf := recordedFacts(t, tc.file, tc.user)
			w, inHome := uf.StrictModesWalk(&uf.KeyFiles[0])
			if got := paths(w); got != tc.want || inHome != tc.inHome {
				t.Errorf("walk = %s (in home %v), want %s (%v)", got, inHome, tc.want, tc.inHome)
			}
		})
	}
}

func TestParseUserFactsRejects(t *testing.T) {
	good, err := os.ReadFile("testdata/userfacts/existing.txt")
	if err != nil {
		t.Fatal(err)
	}
	for name, out := range map[string]string{
		"empty":        "",
		"other user":   strings.Replace(string(good), "2 alice", "2 bob", 1),
		"no header":    strings.SplitN(string(good), "\n", 2)[1],
		"truncated":    strings.Replace(string(good), "\nend\n", "\n", 1),
		"bad stat":     strings.Replace(string(good), "stat 1001 1001 41ed /home/alice", "stat x 1001 41ed /home/alice", 1),
		"bad shadow":   strings.Replace(string(good), "shadow star", "shadow $6$", 1),
		"unknown tag":  strings.Replace(string(good), "\nend\n", "\nsurprise 1\nend\n", 1),
		"bad passwd":   strings.Replace(string(good), "passwd alice:x:1001", "passwd alice:x:abc", 1),
		"bad base64":   strings.Replace(string(good), "content 1 ", "content 1 !", 1),
		"bad conn":     strings.Replace(string(good), "conn 10.0.0.5 10.0.0.1 22", "conn 10.0.0.5", 1),
		"no shadow":    strings.Replace(string(good), "shadow star 20782 99999 - -\n", "", 1),
		"bad key file": strings.Replace(string(good), "akf 1 ", "akf x ", 1),
	} {
		if _, err := ParseUserFacts("alice", []byte(out)); err == nil {
			t.Errorf("%s: parsed without error", name)
		}
	}
}

func FuzzParseUserFacts(f *testing.F) {
	files, _ := filepath.Glob("testdata/userfacts/*.txt")
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, out []byte) {
		uf, err := ParseUserFacts("alice", out)
		if err != nil {
			return
		}
		for i := range uf.KeyFiles {
			uf.StrictModesWalk(&uf.KeyFiles[i])
		}
	})
}

func TestGatherFactsOneRoundTrip(t *testing.T) {
	r := newFakeRunner()
	for _, u := range []string{"alice", "ghost"} {
		file := map[string]string{"alice": "existing", "ghost": "missing"}[u]
		b, err := os.ReadFile(filepath.Join("testdata", "userfacts", file+".txt"))
		if err != nil {
			t.Fatal(err)
		}
		r.users[u] = b
	}
	r.paths["/bin/bash"] = PathStat{Path: "/bin/bash", Exists: true, Mode: 0o100755}
	r.groups["sudo"] = true
	env := testEnv()
	qs := []Query{UserFactsQuery("alice", env.Conn()), PathQuery("/bin/bash"), UserFactsQuery("ghost", env.Conn()), GroupQuery("sudo"), GroupQuery("nope"), PathQuery("/bin/zsh"), PathQuery("/bin/bash")}
	vals, err := gatherFacts(context.Background(), r, env, true, qs...)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.calls) != 1 {
		t.Fatalf("%d round trips, want 1", len(r.calls))
	}
	if uf := vals[0].(*UserFacts); uf.Name != "alice" || !uf.Exists {
		t.Errorf("alice: %+v", uf)
	}
	if uf := vals[2].(*UserFacts); uf.Name != "ghost" || uf.Exists {
		t.Errorf("ghost: %+v", uf)
	}
	if st := vals[1].(PathStat); !st.Executable() || vals[6].(PathStat) != st {
		t.Errorf("/bin/bash: %+v, %+v", st, vals[6])
	}
	if st := vals[5].(PathStat); st.Exists {
		t.Errorf("/bin/zsh: %+v", st)
	}
	if vals[3] != true || vals[4] != false {
		t.Errorf("groups: %v %v", vals[3], vals[4])
	}

	// Gathered already: no round trip.
	if _, err := gatherFacts(context.Background(), r, env, true, qs...); err != nil || len(r.calls) != 1 {
		t.Fatalf("second gather: %v, %d round trips", err, len(r.calls))
	}
	// Facts gathered for another connection (the runner's own gathering,
	// which has no Env) are gathered again when sshd's view matters, and
	// only then.
	other := testEnv()
	other.ServerPort = 2222
	other.Facts = env.Facts
	if _, err := gatherFacts(context.Background(), r, other, false, qs[0]); err != nil || len(r.calls) != 1 {
		t.Fatalf("gather without sshd: %v, %d round trips", err, len(r.calls))
	}
	if _, err := gatherFacts(context.Background(), r, other, true, UserFactsQuery("alice", other.Conn())); err != nil || len(r.calls) != 2 {
		t.Fatalf("gather for another connection: %v, %d round trips", err, len(r.calls))
	}
	if !strings.Contains(string(r.calls[1].stdin), "port=2222") {
		t.Errorf("second gather does not ask sshd about port 2222:\n%s", r.calls[1].stdin)
	}
}

// TestGatherFactsRealShell runs a batch of queries with /bin/sh: markers,
// exit statuses and output without a final newline.
func TestGatherFactsRealShell(t *testing.T) {
	q := func(key, script string) Query {
		return Query{Key: key, Script: script, Parse: func(out []byte) (any, error) { return string(out), nil }}
	}
	env := &Env{}
	r := shellRunner{}
	vals, err := gatherFacts(context.Background(), r, env, false,
		q("a", "echo one; echo two"), q("b", "printf 'no newline'"), q("c", "exit 0"))
	if err != nil {
		t.Fatal(err)
	}
	if vals[0] != "one\ntwo\n" || vals[1] != "no newline" || vals[2] != "" {
		t.Errorf("got %q", vals)
	}
	_, err = gatherFacts(context.Background(), r, env, false, q("d", "echo partial; exit 3"))
	if err == nil || !strings.Contains(err.Error(), "gather d: exit status 3") {
		t.Errorf("failing query: %v", err)
	}
}

// shellRunner runs commands with the local /bin/sh (no privileges needed).
type shellRunner struct{}

func (shellRunner) Run(ctx context.Context, cmd string, stdin []byte) ([]byte, error) {
	c := exec.CommandContext(ctx, "/bin/sh", "-c", cmd)
	c.Stdin = strings.NewReader(string(stdin))
	return c.Output()
}

func TestPathAndGroupQueryParse(t *testing.T) {
	v, err := PathQuery("/bin/sh").Parse([]byte("0 0 81ed /bin/sh\n"))
	if err != nil || !v.(PathStat).Executable() {
		t.Errorf("path: %v %v", v, err)
	}
	if _, err := PathQuery("/bin/sh").Parse([]byte("0 0 81ed /bin/bash\n")); err == nil {
		t.Error("stat of another path accepted")
	}
	if _, err := GroupQuery("g").Parse([]byte("maybe\n")); err == nil {
		t.Error("bad group answer accepted")
	}
}

func TestApplyStepsReportsPartialFailure(t *testing.T) {
	r := newFakeRunner()
	r.failAfter = 1
	env := testEnv()
	steps := []hostStep{
		{change: Change{What: "first"}, cmd: "true"},
		{change: Change{What: "second"}, cmd: "false"},
		{change: Change{What: "third"}, cmd: "true"},
	}
	env.Facts.Set("k", 1)
	res, err := applySteps(context.Background(), r, env, steps, "k")
	if err == nil || !strings.HasPrefix(err.Error(), "second: ") {
		t.Errorf("error = %v, want it to name the second step", err)
	}
	if res == nil || len(res.Changes) != 1 || res.Changes[0].What != "first" || !res.Changed {
		t.Errorf("result = %+v, want the first change only", res)
	}
	if _, ok := env.Facts.Get("k"); ok {
		t.Error("facts not forgotten after a failed apply")
	}
}

func mustRead(t testing.TB, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// --- on real lab hosts (internal/lab: root, real sshd) ---

// acctLab starts a lab of one host and returns it with an Env for this
// run's connection as sshd sees it: the test connects from 127.0.0.1 as
// admin.
func acctLab(t *testing.T) (*lab.Lab, *lab.Host, *Env) {
	t.Helper()
	l := lab.New(t, 1)
	h := l.Hosts[0]
	env := &Env{
		Host: h.Name, ControlUser: lab.AdminUser,
		ClientAddr: "127.0.0.1", ServerAddr: h.Addr, ServerPort: h.Port,
		Facts: &Facts{},
	}
	return l, h, env
}

// acctSh runs script as root in h, failing the test when it fails.
func acctSh(t *testing.T, h *lab.Host, script string) string {
	t.Helper()
	out, err := h.Exec(context.Background(), script, nil)
	if err != nil {
		t.Fatalf("%s: %v", script, err)
	}
	return string(out)
}

// acctKeyPair writes a new ed25519 private key to a file and returns the
// file and the public key line.
func acctKeyPair(t *testing.T, comment string) (keyFile, pub string) {
	t.Helper()
	pubKey, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, comment)
	if err != nil {
		t.Fatal(err)
	}
	keyFile = filepath.Join(t.TempDir(), "id_ed25519")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	sp, err := ssh.NewPublicKey(pubKey)
	if err != nil {
		t.Fatal(err)
	}
	return keyFile, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sp))) + " " + comment
}

// acctLogin logs into h as user with the plain OpenSSH client, only
// keyFile and no agent, runs `id -un` (or the key's forced command) and
// returns its output.
func acctLogin(l *lab.Lab, h *lab.Host, user, keyFile string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ssh", "-F", "/dev/null",
		"-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none",
		"-o", "UserKnownHostsFile="+l.KnownHosts, "-o", "StrictHostKeyChecking=yes",
		"-o", "ConnectTimeout=10", "-p", fmt.Sprint(h.Port), "-i", keyFile,
		user+"@"+h.Addr, "id -un")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("ssh %s@%s: %w: %s", user, h.Addr, err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}

// acctMustLogin fails the test, with sshd's log, unless user logs in.
func acctMustLogin(t *testing.T, l *lab.Lab, h *lab.Host, user, keyFile string) {
	t.Helper()
	out, err := acctLogin(l, h, user, keyFile)
	if err != nil || strings.TrimSpace(out) != user {
		t.Fatalf("login as %s: %q, %v\nauth.log:\n%s", user, out, err, acctSh(t, h, "tail -n 20 /var/log/auth.log"))
	}
}

// acctRun decodes a task and runs it on r with a fresh copy of env whose
// facts are gathered again, as a new run would.
func acctRun(t *testing.T, f Factory, src string, r Runner, env *Env) *Result {
	t.Helper()
	m, err := decodeTask(t, f, src)
	if err != nil {
		t.Fatalf("decode %s: %v", src, err)
	}
	res, err := runModule(context.Background(), r, env, m)
	if err != nil {
		t.Fatalf("run %s: %v", src, err)
	}
	return res
}

// TestUserFactsOnLab runs the facts script on a real host: the admin user
// as the lab provisions it, and a user that does not exist.
func TestUserFactsOnLab(t *testing.T) {
	_, h, env := acctLab(t)
	ufs, err := gatherUserFacts(context.Background(), h.Runner(), env, true, lab.AdminUser, "nobody-yet")
	if err != nil {
		t.Fatal(err)
	}
	admin, ghost := ufs[0], ufs[1]
	if err := admin.SSHDKnown(); err != nil {
		t.Fatal(err)
	}
	if !admin.Exists || admin.Home != "/home/admin" || admin.Shadow == nil || admin.Shadow.Password != PasswordStar || !admin.ShellStat.Executable() {
		t.Errorf("admin: %+v", admin)
	}
	if admin.Conn != env.Conn() || !admin.SSHD.StrictModes {
		t.Errorf("sshd: conn %+v, strictmodes %v", admin.Conn, admin.SSHD.StrictModes)
	}
	k := admin.KeyFiles[0]
	installed := acctSh(t, h, "cat /home/admin/.ssh/authorized_keys")
	if k.Real != "/home/admin/.ssh/authorized_keys" || string(k.Content) != installed {
		t.Errorf("admin key file %s: %q, want %q", k.Real, k.Content, installed)
	}
	if w, inHome := admin.StrictModesWalk(&k); !inHome || len(w) != 3 {
		t.Errorf("walk %+v", w)
	}
	if ghost.Exists || ghost.Home != "/home/nobody-yet" || len(ghost.KeyFiles) == 0 || ghost.KeyFiles[0].Path != "/home/nobody-yet/.ssh/authorized_keys" {
		t.Errorf("missing user: %+v", ghost)
	}
	// The runner's own gathering has no Env: through nsenter there is no
	// SSH_CONNECTION to learn the connection from, so sshd is skipped and
	// the module gathers again for its Env.
	q := UserFactsQuery(lab.AdminUser, Conn{})
	out, err := h.Runner().Run(context.Background(), "/bin/sh -s", []byte(q.Script))
	if err != nil {
		t.Fatal(err)
	}
	v, err := q.Parse(out)
	if err != nil {
		t.Fatal(err)
	}
	if uf := v.(*UserFacts); !(env.Conn().Complete() && uf.SSHDConn() != env.Conn()) || uf.SSHDKnown() == nil {
		t.Errorf("facts without a connection: %+v", uf.Conn)
	}
}

// TestSharedSSHDOnLab: with no Match block, sshd -T runs once for all
// users and later gathering reuses its output; a Match block anywhere sshd
// reads (here a drop-in) makes every user get sshd -T of their own, so the
// block's AuthorizedKeysFile applies to its user only.
func TestSharedSSHDOnLab(t *testing.T) {
	_, h, env := acctLab(t)
	ufs, err := gatherUserFacts(context.Background(), h.Runner(), env, true, lab.AdminUser, "bob")
	if err != nil {
		t.Fatal(err)
	}
	for _, uf := range ufs {
		if uf.sshdShared == "" || uf.SSHDKnown() != nil {
			t.Errorf("%s: no Match block, but sshd -T was not shared: %v", uf.Name, uf.SSHDKnown())
		}
	}
	if k := knownFacts(env.Conn(), env.Facts); k.sshd == "" || k.today == 0 || !strings.Contains(factsPrelude(env.Conn(), k), "bg_sshd_out=") {
		t.Errorf("the shared sshd output is not reused: %+v", k)
	}

	acctSh(t, h, "printf 'Match User bob\n\tAuthorizedKeysFile /etc/ssh/keys/%%u\n' >/etc/ssh/sshd_config.d/50-bob.conf")
	fresh := &Env{ClientAddr: env.ClientAddr, ServerAddr: env.ServerAddr, ServerPort: env.ServerPort, Facts: &Facts{}}
	ufs, err = gatherUserFacts(context.Background(), h.Runner(), fresh, true, lab.AdminUser, "bob")
	if err != nil {
		t.Fatal(err)
	}
	admin, bob := ufs[0], ufs[1]
	if admin.sshdShared != "" || bob.sshdShared != "" {
		t.Error("a Match block, but sshd -T was shared between users")
	}
	if len(bob.KeyFiles) != 1 || bob.KeyFiles[0].Path != "/etc/ssh/keys/bob" {
		t.Errorf("bob's key files: %+v", bob.KeyFiles)
	}
	if len(admin.KeyFiles) == 0 || admin.KeyFiles[0].Path != "/home/admin/.ssh/authorized_keys" {
		t.Errorf("admin's key files: %+v", admin.KeyFiles)
	}
}

// TestApplyScriptLocally runs apply scripts with the local /bin/sh in a
// temp dir (no root needed: files are chowned to the current user):
// bg_write replaces atomically and keeps a backup, a failing line stops the
// script, and the result says how far it got.
func TestApplyScriptLocally(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "authorized_keys")
	if err := os.WriteFile(f, []byte("old\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	me, err := exec.Command("id", "-un").Output()
	if err != nil {
		t.Fatal(err)
	}
	owner := strings.TrimSpace(string(me)) + ":"
	content := []byte("new 'line' $(x)\n")
	write := hostStep{
		change:  Change{What: "write"},
		cmd:     shell.Join("bg_write", f, owner, "0600", string(content)),
		content: content,
	}
	env := &Env{}
	res, err := applySteps(context.Background(), shellRunner{}, env, []hostStep{write})
	if err != nil || len(res.Changes) != 1 {
		t.Fatalf("apply: %v %+v", err, res)
	}
	if got, _ := os.ReadFile(f); string(got) != string(content) {
		t.Errorf("content %q", got)
	}
	if got, _ := os.ReadFile(engine.BackupPath(f)); string(got) != "old\n" {
		t.Errorf("backup %q", got)
	}
	if st, _ := os.Stat(f); st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", st.Mode())
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".*")); len(left) != 1 || left[0] != engine.BackupPath(f) {
		t.Errorf("dot files: %v, want only the backup (no temp file left)", left)
	}

	// A failure on any line of a step stops the script there.
	steps := []hostStep{
		{change: Change{What: "one"}, cmd: "true"},
		{change: Change{What: "two"}, cmd: "false\ntouch " + shell.Join(filepath.Join(dir, "after"))},
		{change: Change{What: "three"}, cmd: "true"},
	}
	res, err = applySteps(context.Background(), shellRunner{}, env, steps)
	if err == nil || !strings.HasPrefix(err.Error(), "two: ") || len(res.Changes) != 1 {
		t.Errorf("failing step: %v %+v", err, res)
	}
	if _, err := os.Stat(filepath.Join(dir, "after")); err == nil {
		t.Error("the script went on after a failing line")
	}

	// A script cut anywhere (the connection lost on the way) runs
	// nothing: no half-written file, no step done.
	other := write
	other.content = []byte("other\n")
	other.cmd = shell.Join("bg_write", f, owner, "0600", "other\n")
	touch := hostStep{change: Change{What: "touch"}, cmd: shell.Join("touch", filepath.Join(dir, "touched"))}
	for _, frac := range []float64{0.1, 0.5, 0.9, 0.99} {
		if _, err := applySteps(context.Background(), cutRunner{frac}, env, []hostStep{touch, other}); err == nil {
			t.Errorf("script cut at %v%%: no error", frac*100)
		}
		if got, _ := os.ReadFile(f); string(got) != string(content) {
			t.Errorf("content after a script cut at %v%%: %q", frac*100, got)
		}
		if _, err := os.Stat(filepath.Join(dir, "touched")); err == nil {
			t.Fatalf("a script cut at %v%% ran its first step", frac*100)
		}
	}
}

// cutRunner runs only the first part of the script it is given, as when a
// connection is lost while the script is sent.
type cutRunner struct{ frac float64 }

func (c cutRunner) Run(ctx context.Context, cmd string, stdin []byte) ([]byte, error) {
	return shellRunner{}.Run(ctx, cmd, stdin[:int(float64(len(stdin))*c.frac)])
}

// TestSSHDNoMatch runs the Match detection of FactsPrelude with the local
// /bin/sh on configuration trees: only a tree that surely has no Match
// block lets users share one sshd -T.
func TestSSHDNoMatch(t *testing.T) {
	script := sshdconf.Shell
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  bool
	}{
		{"plain", map[string]string{"sshd_config": "Port 22\n#Match User x\n  # Match all\nPubkeyAuthentication yes"}, true},
		{"Match", map[string]string{"sshd_config": "Port 22\nMatch User x\n\tPasswordAuthentication no\n"}, false},
		{"indented lower case", map[string]string{"sshd_config": "  match address 10.0.0.0/8\n"}, false},
		{"Match=", map[string]string{"sshd_config": "Match=User x\n"}, false},
		{"drop-in without", map[string]string{"sshd_config": "Include sshd_config.d/*.conf\n", "sshd_config.d/a.conf": "Port 22\n"}, true},
		{"drop-in with", map[string]string{"sshd_config": "Include sshd_config.d/*.conf\n", "sshd_config.d/a.conf": "Port 22\n", "sshd_config.d/b.conf": "MATCH Group admins\n"}, false},
		{"Include= and an absolute path", map[string]string{"sshd_config": "include={{dir}}/extra\n", "extra": "Match all\n"}, false},
		{"nested Include", map[string]string{"sshd_config": "Include a.conf\n", "a.conf": "Include b.conf\n", "b.conf": "Port 22\n"}, true},
		{"nested Include with", map[string]string{"sshd_config": "Include a.conf\n", "a.conf": "Include b.conf\n", "b.conf": "Match User x\n"}, false},
		{"dot file skipped", map[string]string{"sshd_config": "Include sshd_config.d/*.conf\n", "sshd_config.d/.a.conf": "Match User x\n"}, true},
		{"Include loop", map[string]string{"sshd_config": "Include sshd_config\n"}, true},
		{"comment after Include", map[string]string{"sshd_config": "Include a.conf # b.conf\n", "b.conf": "Match all\n"}, true},
		{"quoted Include", map[string]string{"sshd_config": "Include \"x y.conf\"\n"}, false},
		{"glob matching nothing", map[string]string{"sshd_config": "Include none.d/*.conf\n"}, true},
		{"no newline at the end", map[string]string{"sshd_config": "Port 22\nMatch all"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, body := range tc.files {
				p := filepath.Join(dir, name)
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte(strings.ReplaceAll(body, "{{dir}}", dir)), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			out, err := exec.Command("/bin/sh", "-c", script+"if bg_sshd_nomatch "+shell.Quote(dir)+"; then echo none; else echo some; fi").CombinedOutput()
			if err != nil {
				t.Fatalf("%v: %s", err, out)
			}
			if got := strings.TrimSpace(string(out)) == "none"; got != tc.want {
				t.Errorf("no Match: %v, want %v", got, tc.want)
			}
		})
	}
}

// TestFastPathsOnLab compares the facts script's fast path (one lstat of
// every component, getent for all users at once) with its plain one
// (bg_resolve per path) on users whose paths hold symbolic links: a linked
// .ssh in the user's own home (not followed), a home under a directory
// root linked (followed), a shell that is a link.
func TestFastPathsOnLab(t *testing.T) {
	_, h, env := acctLab(t)
	acctSh(t, h, `mkdir -p /srv/keys-a /srv/data/homes && chmod 0755 /srv/keys-a
useradd -m -s /bin/bash linked && ln -s /srv/keys-a /home/linked/.ssh && echo 'ssh-ed25519 AAAA x' >/srv/keys-a/authorized_keys
useradd -m -d /srv/data/homes/moved -s /bin/sh moved && ln -s /srv/data/homes /srv/homes && usermod -d /srv/homes/moved moved
useradd -m -s /bin/sh plain && mkdir -m 0700 /home/plain/.ssh && echo 'ssh-ed25519 BBBB y' >/home/plain/.ssh/authorized_keys`)
	users := []string{lab.AdminUser, "linked", "moved", "plain", "nobody-yet"}
	read := func(slow bool) []*UserFacts {
		t.Helper()
		var qs []Query
		for _, u := range users {
			q := UserFactsQuery(u, env.Conn())
			if slow {
				q.Script = "bg_slow=1\n" + q.Script
			}
			qs = append(qs, q)
		}
		fresh := &Env{ClientAddr: env.ClientAddr, ServerAddr: env.ServerAddr, ServerPort: env.ServerPort, Facts: &Facts{}}
		vals, err := gatherFacts(context.Background(), h.Runner(), fresh, true, qs...)
		if err != nil {
			t.Fatal(err)
		}
		out := make([]*UserFacts, len(vals))
		for i, v := range vals {
			out[i] = v.(*UserFacts)
		}
		return out
	}
	fast, slow := read(false), read(true)
	for i, u := range users {
		f, s := fast[i], slow[i]
		if f.HomeReal != s.HomeReal || f.HomeStat != s.HomeStat || f.ShellStat != s.ShellStat || f.Exists != s.Exists || !slices.Equal(f.Groups, s.Groups) || f.Shadow == nil != (s.Shadow == nil) {
			t.Errorf("%s: fast %+v\nslow %+v", u, f, s)
		}
		if len(f.KeyFiles) != len(s.KeyFiles) {
			t.Fatalf("%s: %d key files, slow %d", u, len(f.KeyFiles), len(s.KeyFiles))
		}
		for j := range f.KeyFiles {
			fk, sk := f.KeyFiles[j], s.KeyFiles[j]
			if fk.Real != sk.Real || !slices.Equal(fk.Walk, sk.Walk) || !bytes.Equal(fk.Content, sk.Content) {
				t.Errorf("%s key file %d: fast %+v\nslow %+v", u, j, fk, sk)
			}
		}
	}
	// A link in a directory its user owns is never followed, however it
	// got there: the user could have planted it.
	if k := fast[1].KeyFiles[0]; k.Real != "" || k.Content != nil || k.Link != "/home/linked/.ssh" || k.LinkTarget != `"/srv/keys-a"` {
		t.Errorf("linked .ssh: %+v", k)
	}
	if fast[2].HomeReal != "/srv/data/homes/moved" || !fast[3].ShellStat.Executable() {
		t.Errorf("moved home %q, plain's shell %+v", fast[2].HomeReal, fast[3].ShellStat)
	}
}

// TestFactsPreludeLocally runs the facts prelude with the local /bin/sh
// and prints what it leaves for the user queries: several users' passwd
// entries read at once (only for several), the day (told or computed), and
// sshd's shared output when it is known.
func TestFactsPreludeLocally(t *testing.T) {
	show := `printf 'users=%s|pw=%s|today=%s|shared=%s|out=%s|path=%s\n' "${bg_pw_users-unset}" "$(printf '%s\n' "${bg_pw_all-}" | cut -d: -f1 | tr '\n' ,)" "$bg_today" "${bg_sshd_shared-}" "${bg_sshd_out-}" "$PATH"`
	c := Conn{Client: "10.0.0.1", Server: "10.0.0.2", Port: 22}
	day := strconv.FormatInt(time.Now().Unix()/86400, 10)
	const path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	for _, tt := range []struct {
		name  string
		c     Conn
		k     known
		users []string
		want  string
	}{
		{"two users, all known", c, known{sshd: "port 22\nx 'y'\n", today: 12345}, []string{"root", "bin", "root", "Bad Name"},
			"users= root bin |pw=root,bin,|today=12345|shared=1|out=port 22\nx 'y'\n|path=" + path},
		{"one user, nothing known", c, known{}, []string{"root"}, "users=unset|pw=,|today=" + day + "|shared=|out=|path=" + path},
		{"sshd known, connection not", Conn{}, known{sshd: "port 22\n"}, nil, "users=unset|pw=,|today=" + day + "|shared=|out=|path=" + path},
	} {
		t.Run(tt.name, func(t *testing.T) {
			out, err := exec.Command("/bin/sh", "-c", factsPrelude(tt.c, tt.k, tt.users...)+show).Output()
			if got := strings.TrimSuffix(string(out), "\n"); err != nil || got != tt.want {
				t.Errorf("got %q (%v), want %q", got, err, tt.want)
			}
		})
	}
}
