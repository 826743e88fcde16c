package tasks

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/breakglass/breakglass/internal/engine"
	"github.com/breakglass/breakglass/internal/lab"
	"github.com/breakglass/breakglass/internal/shell"
	"github.com/breakglass/breakglass/internal/wire"
	"github.com/breakglass/breakglass/internal/yamlx"
)

// Helpers prefixed sc are shared by the sudoers and command tests.

// scriptRecorder is a fake Runner: it records every call and answers with
// reply (nil reply: empty output, no error).
type scriptRecorder struct {
	mu    sync.Mutex
	calls []scCall
	reply func(cmd string, stdin []byte) ([]byte, error)
}

type scCall struct {
	cmd   string
	stdin string
}

func (r *scriptRecorder) Run(ctx context.Context, cmd string, stdin []byte) ([]byte, error) {
	r.mu.Lock()
	r.calls = append(r.calls, scCall{cmd, string(stdin)})
	r.mu.Unlock()
	if r.reply == nil {
		return nil, nil
	}
	return r.reply(cmd, stdin)
}

// scDecode decodes src (the module's argument mapping) from a file
// called play.yml with factory f.
func scDecode(t *testing.T, f Factory, src string) (Module, error) {
	t.Helper()
	n, err := yamlx.ParseFile("play.yml", []byte(src))
	if err != nil {
		t.Fatalf("parse %q: %v", src, err)
	}
	return f("play.yml", n)
}

func mustSudoers(t *testing.T, src string) *Sudoers {
	t.Helper()
	m, err := scDecode(t, NewSudoers, src)
	if err != nil {
		t.Fatalf("decode %q: %v", src, err)
	}
	return m.(*Sudoers)
}

func TestSudoersRegistered(t *testing.T) {
	if _, ok := Lookup("sudoers"); !ok {
		t.Fatal("sudoers is not registered")
	}
}

func TestSudoersRender(t *testing.T) {
	for _, tc := range []struct {
		src, want string
	}{
		{
			"{name: breakglass, users: [bg-ops1, bg-ops2], nopasswd: true}",
			"bg-ops1,bg-ops2 ALL=(ALL) NOPASSWD: ALL\n",
		},
		{
			"{name: ops, users: [bg-ops1], groups: [ops, '%wheel']}",
			"bg-ops1,%ops,%wheel ALL=(ALL) ALL\n",
		},
		{
			// words squeezed to single spaces, duplicates dropped
			"{name: web, users: [deploy, deploy], runas: www-data, commands: ['/usr/bin/systemctl  restart nginx', /usr/bin/true, /usr/bin/true]}",
			"deploy ALL=(www-data) /usr/bin/systemctl restart nginx, /usr/bin/true\n",
		},
		{
			"{name: ed, users: [ann], nopasswd: true, commands: [sudoedit /etc/motd]}",
			"ann ALL=(ALL) NOPASSWD: sudoedit /etc/motd\n",
		},
		{
			"{name: Ops_1-x, groups: [ops], commands: [ALL], runas: ALL}",
			"%ops ALL=(ALL) ALL\n",
		},
	} {
		s := mustSudoers(t, tc.src)
		header, rule, ok := strings.Cut(s.content, "\n")
		if !ok || !strings.HasPrefix(header, "# managed by breakglass") {
			t.Errorf("%s: header %q: want a \"# managed by breakglass\" comment", tc.src, header)
		}
		if rule != tc.want {
			t.Errorf("%s: rule %q, want %q", tc.src, rule, tc.want)
		}
		if again := mustSudoers(t, tc.src).content; again != s.content {
			t.Errorf("%s: rendering is not deterministic:\n%s\n%s", tc.src, s.content, again)
		}
	}
}

// Every input error names play.yml:line:column and says why.
func TestSudoersRejects(t *testing.T) {
	for _, tc := range []struct {
		name, src string
		want      []string // substrings of the error, each must appear
	}{
		{"dot in name", "name: bg.ops\nusers: [bg-ops1]\n",
			[]string{`play.yml:1:7: sudoers: name "bg.ops"`, "silently skips", `contain "."`}},
		{"tilde name", "name: bg~\nusers: [bg-ops1]\n",
			[]string{`play.yml:1:7: sudoers: name "bg~"`, `end in "~"`}},
		{"slash name", "name: ../sudoers\nusers: [bg-ops1]\n", []string{"play.yml:1:7:"}},
		{"no name", "users: [bg-ops1]\n", []string{"play.yml:1:1: sudoers: name is required"}},
		{"user injection", "name: bg\nusers: [bg-ops1, 'a;rm -rf /']\n",
			[]string{`play.yml:2:18: sudoers: users: invalid user name "a;rm -rf /"`}},
		{"user ALL", "name: bg\nusers: [ALL]\n", []string{`play.yml:2:9: sudoers: users: invalid user name "ALL"`}},
		{"group injection", "name: bg\ngroups: ['ops ALL=(ALL) NOPASSWD: ALL']\n",
			[]string{"play.yml:2:10: sudoers: groups: invalid group name"}},
		{"newline in command", "name: bg\nusers: [a]\ncommands: [\"/bin/true\\nroot ALL=(ALL) ALL\"]\n",
			[]string{"play.yml:3:12: sudoers: commands:", "newline"}},
		{"NUL in command", "name: bg\nusers: [a]\ncommands: [\"/bin/true\\0\"]\n", []string{"play.yml:3:12:", "NUL"}},
		{"comma in command", "name: bg\nusers: [a]\ncommands: ['/bin/ls a,b']\n", []string{"play.yml:3:12:", `argument "a,b"`}},
		{"colon in command", "name: bg\nusers: [a]\ncommands: ['/bin/ls a:b']\n", []string{"play.yml:3:12:", `argument "a:b"`}},
		{"equals in command", "name: bg\nusers: [a]\ncommands: ['/bin/ls a=b']\n", []string{"play.yml:3:12:", `argument "a=b"`}},
		{"backslash in command", "name: bg\nusers: [a]\ncommands: ['/bin/ls a\\,b']\n", []string{"play.yml:3:12:"}},
		{"comment in command", "name: bg\nusers: [a]\ncommands: ['/bin/ls #x']\n", []string{"play.yml:3:12:"}},
		{"regex in command", "name: bg\nusers: [a]\ncommands: ['/bin/ls ^a$']\n", []string{"play.yml:3:12:"}},
		{"relative command", "name: bg\nusers: [a]\ncommands: [ls]\n", []string{"play.yml:3:12:", "absolute path"}},
		{"alias command", "name: bg\nusers: [a]\ncommands: [RESTART]\n", []string{"play.yml:3:12:", "no aliases"}},
		{"negated command", "name: bg\nusers: [a]\ncommands: ['!/bin/sh']\n", []string{"play.yml:3:12:"}},
		{"dotdot command", "name: bg\nusers: [a]\ncommands: [/usr/../bin/sh]\n", []string{"play.yml:3:12:"}},
		{"ALL with more", "name: bg\nusers: [a]\ncommands: [ALL, /bin/true]\n", []string{"play.yml:3:12:", "ALL already allows"}},
		{"empty commands", "name: bg\nusers: [a]\ncommands: []\n", []string{"play.yml:3:11: sudoers: commands is empty"}},
		{"no one", "name: bg\nnopasswd: true\n", []string{"play.yml:1:1:", "at least one entry in users or groups"}},
		{"runas", "name: bg\nusers: [a]\nrunas: 'root) ALL'\n", []string{"play.yml:3:8: sudoers: runas:"}},
		{"state", "name: bg\nusers: [a]\nstate: gone\n", []string{`play.yml:3:8: sudoers: state "gone"`}},
		{"unknown key", "name: bg\nusers: [a]\nnopassword: true\n", []string{`play.yml:3:1: unknown key "nopassword"`}},
		{"users scalar", "name: bg\nusers: bg-ops1\n", []string{"play.yml:2:8:", "expected a list"}},
		{"nopasswd not bool", "name: bg\nusers: [a]\nnopasswd: sometimes\n", []string{"play.yml:3:"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := scDecode(t, NewSudoers, tc.src)
			if err == nil {
				t.Fatalf("accepted %q: %+v", tc.src, m)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\nlacks %q", err, w)
				}
			}
		})
	}
}

// All input errors of a task come back together.
func TestSudoersRejectsAllAtOnce(t *testing.T) {
	_, err := scDecode(t, NewSudoers, "name: a.b\nusers: ['x y']\ncommands: [ls]\nstate: nope\n")
	if err == nil {
		t.Fatal("accepted")
	}
	for _, w := range []string{"play.yml:1:7:", "play.yml:2:9:", "play.yml:3:12:", "play.yml:4:8:"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q\nlacks %q", err, w)
		}
	}
}

// A drop-in over the read limit is read in part, and rewritten.
func TestSudoersHugeDropIn(t *testing.T) {
	s := mustSudoers(t, "{name: bg, users: [bg-ops1], nopasswd: true}")
	v, err := parseSudoersFile([]byte("present 0 0 440 regular file\n" + s.content + strings.Repeat("#", 3<<20)))
	if err != nil {
		t.Fatal(err)
	}
	f := v.(sudoersFile)
	if len(f.Content) > sudoersMaxRead+100 {
		t.Errorf("kept %d bytes of the file", len(f.Content))
	}
	p, err := s.planChanges(f, false)
	if err != nil || !p.install {
		t.Errorf("plan %+v %v, want a rewrite", p, err)
	}
}

func TestParseSudoersFile(t *testing.T) {
	for _, tc := range []struct {
		out  string
		want sudoersFile
		bad  bool
	}{
		{out: "absent\n", want: sudoersFile{}},
		{out: "present 0 0 440 regular file\n# x\nbg ALL=(ALL) ALL\n", want: sudoersFile{Exists: true, Type: "regular file", Mode: 0o440, Content: "# x\nbg ALL=(ALL) ALL\n"}},
		{out: "present 1000 27 644 regular empty file\n", want: sudoersFile{Exists: true, Type: "regular empty file", UID: 1000, GID: 27, Mode: 0o644}},
		{out: "present 0 0 777 symbolic link\n", want: sudoersFile{Exists: true, Type: "symbolic link", Mode: 0o777}},
		{out: "", bad: true},
		{out: "present x 0 440 regular file\n", bad: true},
		{out: "present 0 0 9z9 regular file\n", bad: true},
	} {
		v, err := parseSudoersFile([]byte(tc.out))
		if tc.bad {
			if err == nil {
				t.Errorf("%q: accepted as %+v", tc.out, v)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.out, err)
			continue
		}
		if !reflect.DeepEqual(v.(sudoersFile), tc.want) {
			t.Errorf("%q: got %+v, want %+v", tc.out, v, tc.want)
		}
	}
}

// sudoersFake answers the fact query with state and the install step
// with install, recording both.
func sudoersFake(state string, install string) *scriptRecorder {
	return &scriptRecorder{reply: func(cmd string, stdin []byte) ([]byte, error) {
		return sudoersReply(stdin, state, install, nil)
	}}
}

// sudoersReply answers as a host would: a fact batch with state as every
// query's output; an apply script (one round trip of steps, the install
// transaction first) with install as the transaction's report, and the
// steps done when it says "status ok" (else the script exits 1, as the
// batch's check of the step's ok line makes it). runErr: the connection
// was lost during the install.
func sudoersReply(stdin []byte, state, install string, runErr error) ([]byte, error) {
	s := string(stdin)
	nonce, bodies, ok := wire.Parse(stdin)
	if !ok {
		return nil, fmt.Errorf("fake host: neither facts nor an apply script: %.60q", s)
	}
	if strings.HasPrefix(s, "{\n"+engine.ApplyPrelude) {
		if runErr != nil {
			return nil, runErr
		}
		report := strings.TrimSuffix(install, "\n")
		if !strings.Contains("\n"+install+"\n", "\nstatus ok\n") {
			return []byte(wire.Reply(nonce, 0, report, 1)), errors.New("exit status 1")
		}
		out := wire.Reply(nonce, 0, report, 0)
		for i := 1; i < len(stepBodies(bodies)); i++ {
			out += wire.Reply(nonce, i, "", 0)
		}
		return []byte(out), nil
	}
	var out strings.Builder
	for i := range bodies {
		out.WriteString(wire.Reply(nonce, i, state, 0))
	}
	return []byte(out.String()), nil
}

func TestSudoersPlan(t *testing.T) {
	const src = "{name: bg, users: [bg-ops1], nopasswd: true}"
	want := mustSudoers(t, src).content
	for _, tc := range []struct {
		name    string
		state   string
		changes []string // What of each change, in order
	}{
		{"absent", "absent\n", []string{"create /etc/sudoers.d/bg (root:root 0440)"}},
		{"same", "present 0 0 440 regular file\n" + want, nil},
		{"other content", "present 0 0 440 regular file\nbg-ops1 ALL=(ALL) ALL\n", []string{"update /etc/sudoers.d/bg"}},
		{"wrong mode", "present 0 0 644 regular file\n" + want, []string{"chown root:root, chmod 0440 /etc/sudoers.d/bg (was 0:0 0644)"}},
		{"wrong owner", "present 1000 1000 440 regular file\n" + want, []string{"chown root:root, chmod 0440 /etc/sudoers.d/bg (was 1000:1000 0440)"}},
		{"both", "present 0 4 664 regular file\nold\n", []string{"update /etc/sudoers.d/bg", "chown root:root, chmod 0440 /etc/sudoers.d/bg (was 0:4 0664)"}},
	} {
		for _, check := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/check=%v", tc.name, check), func(t *testing.T) {
				rec := sudoersFake(tc.state, "status ok\nstage done\n| \n")
				res, err := runModule(context.Background(), rec, &Env{Check: check}, mustSudoers(t, src))
				if err != nil {
					t.Fatal(err)
				}
				var got []string
				for _, c := range res.Changes {
					got = append(got, c.What)
				}
				if strings.Join(got, "\n") != strings.Join(tc.changes, "\n") || res.Changed != (len(tc.changes) > 0) {
					t.Errorf("changed=%v changes %q, want %q", res.Changed, got, tc.changes)
				}
				// One round trip to gather; one more to apply, only when
				// something changes and not in check mode.
				wantCalls := 1
				if !check && len(tc.changes) > 0 {
					wantCalls = 2
				}
				if len(rec.calls) != wantCalls {
					t.Fatalf("%d round trips, want %d: %q", len(rec.calls), wantCalls, rec.calls)
				}
				for i, c := range rec.calls {
					if c.cmd != "/bin/sh -s" {
						t.Errorf("call %d: command line %q: data must go on stdin", i, c.cmd)
					}
				}
				if check && strings.ContainsAny(rec.calls[0].stdin, "|>") && strings.Contains(rec.calls[0].stdin, "mv") {
					t.Errorf("check mode sent a change: %q", rec.calls[0].stdin)
				}
				if wantCalls == 2 && !strings.Contains(rec.calls[1].stdin, want) {
					t.Errorf("install script lacks the content:\n%s", rec.calls[1].stdin)
				}
			})
		}
	}
}

func TestSudoersCheckModeSendsNoChange(t *testing.T) {
	for _, src := range []string{
		"{name: bg, users: [bg-ops1], nopasswd: true}",
		"{name: bg, state: absent}",
	} {
		rec := sudoersFake("present 1000 0 666 regular file\nsomething else\n", "")
		res, err := runModule(context.Background(), rec, &Env{Check: true}, mustSudoers(t, src))
		if err != nil {
			t.Fatal(err)
		}
		if !res.Changed {
			t.Errorf("%s: check mode reports no change", src)
		}
		for _, c := range rec.calls {
			for _, verb := range []string{"visudo", "mv ", "rm ", "chmod", "chown", "cat >", "ln "} {
				if strings.Contains(c.stdin, verb) {
					t.Errorf("%s: check mode sent %q:\n%s", src, verb, c.stdin)
				}
			}
		}
	}
}

func TestSudoersDiff(t *testing.T) {
	s := mustSudoers(t, "{name: bg, users: [bg-ops1]}")
	for _, diff := range []bool{true, false} {
		rec := sudoersFake("present 0 0 440 regular file\nold\n", "")
		res, err := runModule(context.Background(), rec, &Env{Check: true, Diff: diff}, s)
		if err != nil {
			t.Fatal(err)
		}
		c := res.Changes[0]
		if diff && (c.Before != "old\n" || c.After != s.content || c.Path != "/etc/sudoers.d/bg") {
			t.Errorf("diff: %+v", c)
		}
		if !diff && (c.Before != "" || c.After != "") {
			t.Errorf("no diff asked, got %+v", c)
		}
	}
	rm := mustSudoers(t, "{name: bg, state: absent}")
	res, err := runModule(context.Background(), sudoersFake("present 0 0 440 regular file\nold\n", ""), &Env{Check: true, Diff: true}, rm)
	if err != nil || res.Changes[0].Before != "old\n" || res.Changes[0].After != "" || res.Changes[0].What != "remove /etc/sudoers.d/bg" {
		t.Errorf("absent: %+v %v", res, err)
	}
}

func TestSudoersRefusesNonRegular(t *testing.T) {
	rec := sudoersFake("present 0 0 755 directory\n", "")
	_, err := runModule(context.Background(), rec, &Env{}, mustSudoers(t, "{name: bg, users: [a]}"))
	if err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("got %v", err)
	}
	if len(rec.calls) != 1 {
		t.Errorf("sent %d scripts, want only the fact query", len(rec.calls))
	}
}

func TestSudoersUsesGatheredFact(t *testing.T) {
	s := mustSudoers(t, "{name: bg, users: [a]}")
	qs := s.Queries()
	if len(qs) != 1 {
		t.Fatalf("%d queries", len(qs))
	}
	v, err := qs[0].Parse([]byte("present 0 0 440 regular file\n" + s.content))
	if err != nil {
		t.Fatal(err)
	}
	env := &Env{Facts: &Facts{}}
	env.Facts.Set(qs[0].Key, v)
	rec := &scriptRecorder{}
	res, err := runModule(context.Background(), rec, env, s)
	if err != nil || res.Changed {
		t.Fatalf("res %+v err %v", res, err)
	}
	if len(rec.calls) != 0 {
		t.Errorf("gathered fact not used: %q", rec.calls)
	}
}

func TestSudoersApplyOutcomes(t *testing.T) {
	s := mustSudoers(t, "{name: bg, users: [bg-ops1], nopasswd: true}")
	for _, tc := range []struct {
		name       string
		out        string
		runErr     error
		stage      string
		rolledBack bool
		msg        string
	}{
		{name: "ok", out: "status ok\nstage done\n| \n"},
		{name: "visudo", out: "status failed\nstage visudo-file\n| tmp:2:19: sudoedit should not be specified with a path\n|   ^~~\n",
			stage: "visudo-file", msg: "visudo -cf rejected the new file; nothing was installed: tmp:2:19: sudoedit should not be specified with a path\n  ^~~"},
		{name: "confirm", out: "restored ok\nstatus failed\nstage confirm\n| sudo -l -U ghost failed (exit 1):\n| sudo: unknown user ghost\n",
			stage: "confirm", rolledBack: true, msg: "the previous state was restored: sudo -l -U ghost failed (exit 1):\nsudo: unknown user ghost"},
		{name: "restore failed", out: "restored failed\nstatus failed\nstage visudo-tree\n| boom\n",
			stage: "visudo-tree", rolledBack: true, msg: "RESTORING THE PREVIOUS STATE FAILED"},
		{name: "garbage", out: "Segmentation fault\n", stage: "unknown", msg: "no status from the install script"},
		{name: "connection lost", runErr: errors.New("ssh: connection lost"), msg: "transaction (install, removal or clearing what killed runs left) did not finish"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &scriptRecorder{reply: func(cmd string, stdin []byte) ([]byte, error) {
				return sudoersReply(stdin, "absent\n", tc.out, tc.runErr)
			}}
			env := &Env{Facts: &Facts{}}
			res, err := runModule(context.Background(), rec, env, s)
			if _, ok := env.Facts.Get(s.factKey()); ok {
				t.Error("fact not invalidated after the install")
			}
			if tc.name == "ok" {
				if err != nil || !res.Changed {
					t.Fatalf("res %+v err %v", res, err)
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error %q\nlacks %q", err, tc.msg)
			}
			if tc.runErr != nil {
				if !errors.Is(err, tc.runErr) {
					t.Errorf("%v does not wrap %v", err, tc.runErr)
				}
				return
			}
			var se *SudoersError
			if !errors.As(err, &se) {
				t.Fatalf("%T is not a *SudoersError", err)
			}
			if se.Stage != tc.stage || se.RolledBack != tc.rolledBack || res.RolledBack != tc.rolledBack || res.Changed {
				t.Errorf("stage %q rolledBack %v/%v changed %v", se.Stage, se.RolledBack, res.RolledBack, res.Changed)
			}
		})
	}
}

func TestSudoersScript(t *testing.T) {
	s := mustSudoers(t, "{name: bg, users: [bg-ops1, bg-ops2], nopasswd: true}")
	script, err := s.script(sudoersPlan{install: true, existed: true}, "admin")
	if err != nil {
		t.Fatal(err)
	}
	sc := string(script)
	// the data travels in one quoted variable that gives back its bytes
	if want := "\ncontent=" + shell.Quote(s.content) + "\n"; !strings.Contains(sc, want) {
		t.Errorf("script lacks %q:\n%s", want, sc)
	}
	for _, w := range []string{
		"old=/etc/sudoers.d/.bg.breakglass-old.", "new=/etc/sudoers.d/.bg.breakglass-new.", // names sudo ignores, this run's own
		`visudo -cf "$tmp"`, `visudo -c `, `printf '%s' "$content" | bg_temp "$f" 0:0 0440`,
		`bg_commit "$tmp" "$f" nobak`, `bg_keep "$old" "$f"`,
		`sudo -l -U "$u"`, "users='bg-ops1 bg-ops2'\n", "mode=install\n", "want='(ALL) NOPASSWD: ALL'",
		"cu=admin\n",
	} {
		if !strings.Contains(sc, w) {
			t.Errorf("script lacks %q", w)
		}
	}
	// two runs never share a temp or backup name: neither removes the other's
	again, _ := s.script(sudoersPlan{install: true, existed: true}, "admin")
	for _, v := range []string{"new=", "old="} {
		if a, b := scriptVar(sc, v), scriptVar(string(again), v); a == "" || a == b {
			t.Errorf("%s is %q in both runs", v, a)
		}
	}
	// no control-user check when connected as root or unknown
	for _, cu := range []string{"", "root"} {
		script, _ := s.script(sudoersPlan{install: true, existed: true}, cu)
		if scriptVar(string(script), "cu=") != "''" {
			t.Errorf("control user %q: script checks it", cu)
		}
	}
	// nor when a new file's rules name neither the control user nor a
	// group: sudo cannot apply them to the control user
	if script, _ := s.script(sudoersPlan{install: true}, "admin"); scriptVar(string(script), "cu=") != "''" {
		t.Error("a new file for other users: script checks the control user")
	}
	for _, src := range []string{
		"{name: bg, users: [bg-ops1, admin], nopasswd: true}",
		"{name: bg, groups: [wheel], nopasswd: true}",
	} {
		if script, _ := mustSudoers(t, src).script(sudoersPlan{install: true}, "admin"); scriptVar(string(script), "cu=") != "admin" {
			t.Errorf("%s: a new file naming the control user or a group, but no check", src)
		}
	}
}

// scriptVar is the value of the first line "NAME=VALUE" of script (v is "NAME=").
func scriptVar(script, v string) string {
	for _, l := range strings.Split(script, "\n") {
		if val, ok := strings.CutPrefix(l, v); ok {
			return val
		}
	}
	return ""
}

// --- on real hosts ---

// labHost starts one lab host and returns it with its runner.
func scLabHost(t *testing.T) (*lab.Host, Runner) {
	t.Helper()
	l := lab.New(t, 1)
	h := l.Hosts[0]
	return h, h.Runner()
}

// hostSh runs script as root in h and fails the test if it fails.
func scSh(t *testing.T, h *lab.Host, script string) string {
	t.Helper()
	out, err := h.Exec(context.Background(), script, nil)
	if err != nil {
		t.Fatalf("%s: %v", script, err)
	}
	return string(out)
}

// canSudo reports whether user, logged in as themselves, can run
// `sudo -n true`.
func scCanSudo(t *testing.T, h *lab.Host, user string) bool {
	t.Helper()
	_, err := h.Exec(context.Background(), "su -s /bin/sh "+user+" -c 'sudo -n true' </dev/null", nil)
	return err == nil
}

func runSudoers(t *testing.T, r Runner, env Env, src string) (*Result, error) {
	t.Helper()
	env.Facts = &Facts{} // a fresh run: gather again
	return runModule(context.Background(), r, &env, mustSudoers(t, src))
}

func TestSudoersOnHost(t *testing.T) {
	h, r := scLabHost(t)
	env := Env{Host: h.Name, ControlUser: "admin"}
	const rule = "{name: breakglass, users: [bg-ops1], nopasswd: true}"
	scSh(t, h, "useradd -m -s /bin/bash bg-ops1")
	if scCanSudo(t, h, "bg-ops1") {
		t.Fatal("bg-ops1 can sudo before any rule")
	}
	if !scCanSudo(t, h, "admin") {
		t.Fatal("admin cannot sudo on a fresh lab host")
	}

	// check mode: reports, changes nothing
	res, err := runSudoers(t, r, Env{Host: h.Name, ControlUser: "admin", Check: true}, rule)
	if err != nil || !res.Changed {
		t.Fatalf("check: res %+v err %v", res, err)
	}
	if out := scSh(t, h, "ls -A /etc/sudoers.d"); strings.Contains(out, "breakglass") {
		t.Fatalf("check mode wrote to /etc/sudoers.d: %s", out)
	}

	// install
	res, err = runSudoers(t, r, env, rule)
	if err != nil || !res.Changed {
		t.Fatalf("install: res %+v err %v", res, err)
	}
	if got := scSh(t, h, "stat -c '%U:%G %a' /etc/sudoers.d/breakglass"); got != "root:root 440\n" {
		t.Errorf("installed as %q", got)
	}
	if !scCanSudo(t, h, "bg-ops1") {
		t.Fatal("bg-ops1 cannot sudo -n true after the install")
	}
	if out := scSh(t, h, "ls -A /etc/sudoers.d"); strings.Contains(out, "tmp") {
		t.Errorf("temp file left behind: %s", out)
	}
	installed := scSh(t, h, "cat /etc/sudoers.d/breakglass")

	// second run: nothing to do
	res, err = runSudoers(t, r, env, rule)
	if err != nil || res.Changed {
		t.Fatalf("second run: res %+v err %v", res, err)
	}

	// a rule visudo refuses (sudoedit must not have a path): nothing
	// installed, the previous file untouched, everyone keeps sudo
	_, err = runSudoers(t, r, env, "{name: breakglass, users: [bg-ops1], commands: [/usr/bin/sudoedit /etc/motd]}")
	var se *SudoersError
	if !errors.As(err, &se) || se.Stage != "visudo-file" || !strings.Contains(se.Output, "sudoedit should not be specified with a path") {
		t.Fatalf("visudo failure: %v", err)
	}
	t.Logf("refused as expected: %v", err)
	if got := scSh(t, h, "cat /etc/sudoers.d/breakglass"); got != installed {
		t.Errorf("file changed by a refused rule:\n%s", got)
	}
	if !scCanSudo(t, h, "admin") || !scCanSudo(t, h, "bg-ops1") {
		t.Error("sudo lost after a refused rule")
	}

	// a rule sudo -l cannot confirm (a user that does not exist): installed,
	// then taken back
	res, err = runSudoers(t, r, env, "{name: breakglass, users: [bg-ops1, ghost], nopasswd: true}")
	if !errors.As(err, &se) || se.Stage != "confirm" || !se.RolledBack || !res.RolledBack || !strings.Contains(err.Error(), "unknown user ghost") {
		t.Fatalf("confirm failure: res %+v err %v", res, err)
	}
	t.Logf("refused as expected: %v", err)
	if got := scSh(t, h, "cat /etc/sudoers.d/breakglass"); got != installed {
		t.Errorf("previous file not restored:\n%s", got)
	}
	if got := scSh(t, h, "stat -c '%U:%G %a' /etc/sudoers.d/breakglass"); got != "root:root 440\n" {
		t.Errorf("restored as %q", got)
	}
	if !scCanSudo(t, h, "admin") || !scCanSudo(t, h, "bg-ops1") {
		t.Error("sudo lost after a rolled-back rule")
	}

	// a new file that would take admin's passwordless sudo away (a later
	// file wins): refused, removed again
	_, err = runSudoers(t, r, env, "{name: zz-admin, users: [admin]}")
	if !errors.As(err, &se) || se.Stage != "control" || !se.RolledBack {
		t.Fatalf("control user check: %v", err)
	}
	t.Logf("refused as expected: %v", err)
	if out := scSh(t, h, "ls -A /etc/sudoers.d"); strings.Contains(out, "zz-admin") {
		t.Errorf("zz-admin left installed: %s", out)
	}
	if !scCanSudo(t, h, "admin") {
		t.Error("admin lost sudo")
	}

	// right content, wrong owner and mode: repaired
	scSh(t, h, "chown 1000:1000 /etc/sudoers.d/breakglass && chmod 0664 /etc/sudoers.d/breakglass")
	res, err = runSudoers(t, r, env, rule)
	if err != nil || !res.Changed || len(res.Changes) != 1 || !strings.Contains(res.Changes[0].What, "chmod 0440") {
		t.Fatalf("repair: res %+v err %v", res, err)
	}
	if got := scSh(t, h, "stat -c '%U:%G %a' /etc/sudoers.d/breakglass"); got != "root:root 440\n" {
		t.Errorf("repaired as %q", got)
	}
	if res, err = runSudoers(t, r, env, rule); err != nil || res.Changed {
		t.Fatalf("after repair: res %+v err %v", res, err)
	}

	// hand-edited into a syntax error (which breaks the tree): rewritten
	scSh(t, h, "echo 'bg-ops1 ALL=(ALL' >/etc/sudoers.d/breakglass")
	if res, err = runSudoers(t, r, env, rule); err != nil || !res.Changed {
		t.Fatalf("broken file: res %+v err %v", res, err)
	}
	if got := scSh(t, h, "cat /etc/sudoers.d/breakglass; visudo -c >/dev/null && echo valid"); got != installed+"valid\n" {
		t.Errorf("after rewriting a broken file: %q", got)
	}

	// absent: removed, backup kept where sudo does not read it
	res, err = runSudoers(t, r, env, "{name: breakglass, state: absent}")
	if err != nil || !res.Changed {
		t.Fatalf("absent: res %+v err %v", res, err)
	}
	if scCanSudo(t, h, "bg-ops1") {
		t.Error("bg-ops1 can still sudo after the rule was removed")
	}
	if got := scSh(t, h, "cat /etc/sudoers.d/.breakglass.breakglass.bak"); got != installed {
		t.Errorf("backup %q", got)
	}
	if res, err = runSudoers(t, r, env, "{name: breakglass, state: absent}"); err != nil || res.Changed {
		t.Fatalf("absent again: res %+v err %v", res, err)
	}
	if !scCanSudo(t, h, "admin") {
		t.Error("admin lost sudo")
	}
}

// A sudoers tree that is already broken elsewhere is reported as such,
// and the new file is taken back.
func TestSudoersOnHostBrokenTree(t *testing.T) {
	h, r := scLabHost(t)
	scSh(t, h, "useradd -m bg-ops1 && printf 'admin ALL=(ALL) NOPASSWD: ALL\\nbroken line here\\n' >/etc/sudoers.d/zz-broken && chmod 0440 /etc/sudoers.d/zz-broken")
	_, err := runSudoers(t, r, Env{ControlUser: "admin"}, "{name: breakglass, users: [bg-ops1], nopasswd: true}")
	var se *SudoersError
	if !errors.As(err, &se) || se.Stage != "visudo-tree" || !strings.Contains(se.Output, "invalid before this change") || !strings.Contains(se.Output, "zz-broken") {
		t.Fatalf("got %v", err)
	}
	if out := scSh(t, h, "ls -A /etc/sudoers.d"); strings.Contains(out, "breakglass") {
		t.Errorf("wrote to a broken tree: %s", out)
	}
}

// When /etc/sudoers does not read /etc/sudoers.d, `sudo -l -U` still exits
// 0: the rule is found missing by its text, and taken back.
func TestSudoersOnHostNotIncluded(t *testing.T) {
	h, r := scLabHost(t)
	scSh(t, h, "useradd -m bg-ops1 && sed -i 's/^[@#]includedir/#off /' /etc/sudoers")
	_, err := runSudoers(t, r, Env{ControlUser: "admin"}, "{name: breakglass, users: [bg-ops1], nopasswd: true}")
	var se *SudoersError
	if !errors.As(err, &se) || se.Stage != "confirm" || !se.RolledBack || !strings.Contains(se.Output, `does not list "(ALL) NOPASSWD: ALL"`) {
		t.Fatalf("got %v", err)
	}
	if out := scSh(t, h, "ls /etc/sudoers.d"); strings.Contains(out, "breakglass") {
		t.Errorf("left installed: %s", out)
	}
}
