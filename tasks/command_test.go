package tasks

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/breakglass/breakglass/internal/wire"
)

func mustCommand(t *testing.T, src string) *Command {
	t.Helper()
	m, err := scDecode(t, NewCommand, src)
	if err != nil {
		t.Fatalf("decode %q: %v", src, err)
	}
	return m.(*Command)
}

// scLocalShell runs commands with this machine's /bin/sh, as the current
// user: for the command module's script, which needs no root. With bash
// set, "/bin/sh -s" runs as "bash -s", as on hosts whose /bin/sh is bash
// (bash reads a script on stdin line by line, dash by blocks).
type scLocalShell struct{ bash bool }

func (l scLocalShell) Run(ctx context.Context, cmd string, stdin []byte) ([]byte, error) {
	if l.bash {
		cmd = strings.Replace(cmd, "/bin/sh -s", "bash -s", 1)
	}
	c := exec.CommandContext(ctx, "/bin/sh", "-c", cmd)
	c.Stdin = bytes.NewReader(stdin)
	var stderr bytes.Buffer
	c.Stderr = &stderr
	out, err := c.Output()
	if err != nil {
		return out, fmt.Errorf("%w: %s", err, stderr.String())
	}
	return out, nil
}

func TestCommandRegistered(t *testing.T) {
	if _, ok := Lookup("command"); !ok {
		t.Fatal("command is not registered")
	}
}

func TestCommandRejects(t *testing.T) {
	for _, tc := range []struct {
		name, src string
		want      []string
	}{
		{"string form", "echo hi\n", []string{"play.yml:1:1:", "expected a mapping"}},
		{"no cmd", "creates: /x\n", []string{"play.yml:1:1: command: cmd is required"}},
		{"blank cmd", "cmd: '  '\n", []string{"play.yml:1:6: command: cmd is required"}},
		{"NUL", "cmd: \"echo \\0\"\n", []string{"play.yml:1:6: command: cmd contains a NUL byte"}},
		{"unknown key", "cmd: x\nshell: /bin/bash\n", []string{`play.yml:2:1: unknown key "shell"`}},
		{"cmd list", "cmd: [echo, hi]\n", []string{"play.yml:1:6:"}},
		{"relative creates", "cmd: x\ncreates: done\n", []string{"play.yml:2:10: command: creates:", "absolute"}},
		{"newline removes", "cmd: x\nremoves: \"/a\\nb\"\n", []string{"play.yml:2:10: command: removes:", "control character"}},
		{"dotdot chdir", "cmd: x\nchdir: /tmp/../etc\n", []string{"play.yml:2:8: command: chdir:"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := scDecode(t, NewCommand, tc.src)
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
	_, err := scDecode(t, NewCommand, "cmd: ''\ncreates: x\nchdir: y\n")
	if err == nil || strings.Count(err.Error(), "play.yml:") != 3 {
		t.Errorf("want three errors at once, got %v", err)
	}
}

// In check mode the command text never leaves this machine; the guards are
// read from facts.
func TestCommandCheckMode(t *testing.T) {
	const secret = "touch /tmp/should-not-exist-1f3a"
	for _, tc := range []struct {
		name   string
		src    string
		exists map[string]bool
		run    bool
	}{
		{"no guard", "{cmd: '" + secret + "'}", nil, true},
		{"creates present", "{cmd: '" + secret + "', creates: /done}", map[string]bool{"/done": true}, false},
		{"creates missing", "{cmd: '" + secret + "', creates: /done}", map[string]bool{"/done": false}, true},
		{"removes present", "{cmd: '" + secret + "', removes: /old}", map[string]bool{"/old": true}, true},
		{"removes missing", "{cmd: '" + secret + "', removes: /old}", map[string]bool{"/old": false}, false},
		{"both", "{cmd: '" + secret + "', creates: /done, removes: /old}", map[string]bool{"/done": false, "/old": true}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The fake host answers the guards' queries, gathered in one
			// round trip, and nothing else.
			rec := &scriptRecorder{reply: func(cmd string, stdin []byte) ([]byte, error) {
				nonce, bodies, ok := wire.Parse(stdin)
				if !ok {
					return nil, errors.New("unexpected script")
				}
				var out strings.Builder
				for i, body := range bodies {
					found := false
					for p, yes := range tc.exists {
						if strings.Contains(body, p) {
							found = true
							answer := "no\n"
							if yes {
								answer = "yes\n"
							}
							out.WriteString(wire.Reply(nonce, i, answer, 0))
						}
					}
					if !found {
						return nil, errors.New("unexpected query")
					}
				}
				return []byte(out.String()), nil
			}}
			res, err := runModule(context.Background(), rec, &Env{Check: true}, mustCommand(t, tc.src))
			if err != nil {
				t.Fatal(err)
			}
			if res.Changed != tc.run {
				t.Errorf("changed=%v, want %v", res.Changed, tc.run)
			}
			if tc.run && (len(res.Changes) != 1 || res.Changes[0].What != "would run: "+secret) {
				t.Errorf("changes %+v", res.Changes)
			}
			for _, c := range rec.calls {
				if strings.Contains(c.cmd+c.stdin, "touch") {
					t.Errorf("check mode sent the command: %q %q", c.cmd, c.stdin)
				}
			}
		})
	}
}

func TestCommandCheckModeUsesGatheredFacts(t *testing.T) {
	c := mustCommand(t, "{cmd: 'true', creates: /done}")
	qs := c.Queries()
	if len(qs) != 1 {
		t.Fatalf("%d queries", len(qs))
	}
	v, err := qs[0].Parse([]byte("yes\n"))
	if err != nil {
		t.Fatal(err)
	}
	env := &Env{Check: true, Facts: &Facts{}}
	env.Facts.Set(qs[0].Key, v)
	rec := &scriptRecorder{}
	res, err := runModule(context.Background(), rec, env, c)
	if err != nil || res.Changed || len(rec.calls) != 0 {
		t.Errorf("res %+v err %v calls %q", res, err, rec.calls)
	}
}

// The real script, run by this machine's /bin/sh.
func TestCommandScript(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	q := func(s string) string { return "'" + s + "'" }

	// creates: runs once, then is skipped
	marker := filepath.Join(dir, "created")
	c := mustCommand(t, fmt.Sprintf("{cmd: %s, creates: %s}", q("echo out; echo err >&2; touch "+marker), marker))
	res, err := runModule(ctx, scLocalShell{}, &Env{}, c)
	if err != nil || !res.Changed {
		t.Fatalf("first run: res %+v err %v", res, err)
	}
	if want := "ran: echo out; echo err >&2; touch " + marker + " (exit 0)\nstdout:\nout\nstderr:\nerr"; res.Changes[0].What != want {
		t.Errorf("change %q\nwant %q", res.Changes[0].What, want)
	}
	if res, err = runModule(ctx, scLocalShell{}, &Env{}, c); err != nil || res.Changed {
		t.Errorf("second run: res %+v err %v", res, err)
	}

	// removes: skipped while the path is missing
	gone := filepath.Join(dir, "old")
	rm := mustCommand(t, fmt.Sprintf("{cmd: %s, removes: %s}", q("rm "+gone), gone))
	if res, err = runModule(ctx, scLocalShell{}, &Env{}, rm); err != nil || res.Changed {
		t.Errorf("removes, missing: res %+v err %v", res, err)
	}
	if err := os.WriteFile(gone, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if res, err = runModule(ctx, scLocalShell{}, &Env{}, rm); err != nil || !res.Changed {
		t.Errorf("removes, present: res %+v err %v", res, err)
	}
	if _, err := os.Stat(gone); !os.IsNotExist(err) {
		t.Errorf("%s still there: %v", gone, err)
	}

	// chdir; stdin is /dev/null, not the rest of the script
	for _, sh := range []scLocalShell{{}, {bash: true}} {
		res, err = runModule(ctx, sh, &Env{}, mustCommand(t, fmt.Sprintf("{cmd: 'pwd; cat', chdir: %s}", dir)))
		if err != nil || res.Changes[0].What != "ran: pwd; cat (exit 0)\nstdout:\n"+dir {
			t.Errorf("chdir (bash %v): res %+v err %v", sh.bash, res, err)
		}
	}
	_, err = runModule(ctx, scLocalShell{}, &Env{}, mustCommand(t, "{cmd: pwd, chdir: /nonexistent-bg}"))
	if err == nil || !strings.Contains(err.Error(), "chdir /nonexistent-bg") {
		t.Errorf("missing chdir: %v", err)
	}

	// failure: exit status and stderr in the error, output in the change
	res, err = runModule(ctx, scLocalShell{}, &Env{}, mustCommand(t, "{cmd: 'echo partial; echo boom >&2; exit 3'}"))
	var ce *CommandError
	if !errors.As(err, &ce) || ce.Status != 3 || strings.TrimSpace(ce.Stderr) != "boom" {
		t.Fatalf("failure: %v", err)
	}
	if err.Error() != `command "echo partial; echo boom >&2; exit 3": exit status 3: boom` {
		t.Errorf("error text %q", err)
	}
	if res == nil || !res.Changed || !strings.Contains(res.Changes[0].What, "stdout:\npartial") {
		t.Errorf("failure result %+v", res)
	}

	// long output keeps its head and tail
	res, err = runModule(ctx, scLocalShell{}, &Env{}, mustCommand(t, "{cmd: 'echo FIRST; head -c 100000 /dev/zero | tr \"\\0\" x; echo; echo LAST'}"))
	if err != nil {
		t.Fatal(err)
	}
	w := res.Changes[0].What
	if !strings.Contains(w, "stdout:\nFIRST\n") || !strings.HasSuffix(w, "LAST") || !strings.Contains(w, "bytes left out") || len(w) > commandHead+commandTail+200 {
		t.Errorf("long output: %d bytes, head %q tail %q", len(w), w[:60], w[len(w)-60:])
	}
}

// Guard paths are data, never shell.
func TestCommandGuardInjection(t *testing.T) {
	dir := t.TempDir()
	pwned := filepath.Join(dir, "pwned")
	for _, key := range []string{"creates", "removes", "chdir"} {
		src := fmt.Sprintf("{cmd: 'true', %s: '%s/$(touch %s)`touch %s`;touch %s'}", key, dir, pwned, pwned, pwned)
		_, _ = runModule(context.Background(), scLocalShell{}, &Env{}, mustCommand(t, src))
		_, _ = runModule(context.Background(), scLocalShell{}, &Env{Check: true}, mustCommand(t, src))
		if _, err := os.Stat(pwned); err == nil {
			t.Fatalf("%s: the path ran as shell", key)
		}
	}
}

func TestParseCommandOutput(t *testing.T) {
	for _, bad := range []string{"", "ran x\n", "ran 0\nstdout 5 5 0\nab", "ran 0\nstdout 1 1 0\na\n", "what\n",
		"ran 0\nstdout 0 0 0\n\nstderr 0 0 0\n\nguard maybe\n"} {
		if o, err := parseCommandOutput([]byte(bad)); err == nil {
			t.Errorf("%q: accepted as %+v", bad, o)
		}
	}
	o, err := parseCommandOutput([]byte("ran 1\nstdout 3 3 0\na\nb\nstderr 10 2 3\nxxyyy\n"))
	if err != nil || o.status != 1 || o.stdout != "a\nb" || o.stderr != "xx\n[... 5 bytes left out ...]\nyyy" || o.guards != nil {
		t.Errorf("%+v %v", o, err)
	}
	o, err = parseCommandOutput([]byte("ran 0\nstdout 0 0 0\n\nstderr 0 0 0\n\nguard yes\nguard no\n"))
	if err != nil || len(o.guards) != 2 || !o.guards[0] || o.guards[1] {
		t.Errorf("guards: %+v %v", o, err)
	}
}

func TestCommandOnHost(t *testing.T) {
	h, r := scLabHost(t)
	ctx := context.Background()
	env := func(check bool) *Env { return &Env{Host: h.Name, ControlUser: "admin", Check: check, Facts: &Facts{}} }
	exists := func(p string) bool {
		_, err := h.Exec(ctx, "test -e "+p, nil)
		return err == nil
	}

	mk := mustCommand(t, "{cmd: 'echo made >/root/made; id -un', creates: /root/made}")
	// check mode: would run, runs nothing
	res, err := runModule(ctx, r, env(true), mk)
	if err != nil || !res.Changed || !strings.HasPrefix(res.Changes[0].What, "would run") {
		t.Fatalf("check: res %+v err %v", res, err)
	}
	if exists("/root/made") {
		t.Fatal("check mode ran the command")
	}
	// runs, as root, once
	res, err = runModule(ctx, r, env(false), mk)
	if err != nil || !res.Changed || !strings.Contains(res.Changes[0].What, "stdout:\nroot") {
		t.Fatalf("run: res %+v err %v", res, err)
	}
	if got := scSh(t, h, "cat /root/made"); got != "made\n" {
		t.Errorf("made %q", got)
	}
	for _, check := range []bool{true, false} {
		if res, err = runModule(ctx, r, env(check), mk); err != nil || res.Changed {
			t.Errorf("again (check=%v): res %+v err %v", check, res, err)
		}
	}

	// removes: check mode leaves the file, a real run removes it, then
	// nothing more to do
	rm := mustCommand(t, "{cmd: 'rm /root/made', removes: /root/made, chdir: /root}")
	if res, err = runModule(ctx, r, env(true), rm); err != nil || !res.Changed || !exists("/root/made") {
		t.Fatalf("removes check: res %+v err %v", res, err)
	}
	if res, err = runModule(ctx, r, env(false), rm); err != nil || !res.Changed || exists("/root/made") {
		t.Fatalf("removes run: res %+v err %v", res, err)
	}
	if res, err = runModule(ctx, r, env(false), rm); err != nil || res.Changed {
		t.Fatalf("removes again: res %+v err %v", res, err)
	}

	// failure
	_, err = runModule(ctx, r, env(false), mustCommand(t, "{cmd: 'echo no such thing >&2; exit 7'}"))
	var ce *CommandError
	if !errors.As(err, &ce) || ce.Status != 7 || !strings.Contains(ce.Stderr, "no such thing") {
		t.Fatalf("failure: %v", err)
	}
}

// countingShell is scLocalShell counting its round trips.
type countingShell struct {
	scLocalShell
	n int
}

func (c *countingShell) Run(ctx context.Context, cmd string, stdin []byte) ([]byte, error) {
	c.n++
	return c.scLocalShell.Run(ctx, cmd, stdin)
}

// Outside check mode the guards' facts were gathered before the play's
// earlier tasks ran: a guard path one of them removed (or made) must not
// skip the command. The host decides, in the one round trip that runs it.
func TestCommandApplyDecidesOnHost(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	marker := filepath.Join(dir, "done")
	c := mustCommand(t, fmt.Sprintf("{cmd: 'touch %s', creates: %s}", marker, marker))
	env := &Env{Facts: &Facts{}}
	// The runner's gather saw the marker; an earlier task removed it since.
	env.Facts.Set(commandExistsKey(marker), true)
	sh := &countingShell{}
	res, err := runModule(ctx, sh, env, c)
	if err != nil || !res.Changed {
		t.Fatalf("res %+v err %v", res, err)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Errorf("the command did not run: %v", err)
	}
	if sh.n != 1 {
		t.Errorf("%d round trips, want 1", sh.n)
	}
	// The guard's fact is read again in the same round trip.
	if v, _ := env.Facts.Get(commandExistsKey(marker)); v != true {
		t.Errorf("the guard's fact after the command: %v, want true", v)
	}

	// So a later command guarded by the same path plans without
	// gathering it again.
	sh.n = 0
	rm := mustCommand(t, fmt.Sprintf("{cmd: 'rm %s', removes: %s}", marker, marker))
	if res, err = runModule(ctx, sh, env, rm); err != nil || !res.Changed || sh.n != 1 {
		t.Errorf("rm: res %+v err %v round trips %d, want 1", res, err, sh.n)
	}
	if v, _ := env.Facts.Get(commandExistsKey(marker)); v != false {
		t.Errorf("the guard's fact after rm: %v, want false", v)
	}

	// And the other way: the facts say it runs, the host says skip.
	if err := os.WriteFile(marker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	sh.n = 0
	if res, err = runModule(ctx, sh, env, c); err != nil || res.Changed || len(res.Changes) != 0 || sh.n != 1 {
		t.Errorf("again: res %+v err %v round trips %d", res, err, sh.n)
	}
}

// TestCommandBackgroundOutput: a command that leaves a process
// writing to its stdout (a daemon started without redirecting it, `x &`)
// grows the output file between command.sh's `wc -c` and its `cat`, so
// the frame holds more bytes than its header says. The command ran (exit
// 0, the host changed) but the task fails with a parse error and reports
// no change.
func TestCommandBackgroundOutput(t *testing.T) {
	c := mustCommand(t, `{cmd: 'echo started; (i=0; while [ $i -lt 3000 ]; do echo bg; i=$((i+1)); done) &'}`)
	for i := 0; i < 5; i++ {
		res, err := runModule(context.Background(), scLocalShell{}, &Env{}, c)
		if err != nil || res == nil || !res.Changed {
			t.Fatalf("run %d: a command that ran and exited 0: res %+v, err %v", i, res, err)
		}
	}
}
