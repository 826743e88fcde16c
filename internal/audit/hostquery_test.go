package audit

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"

	"github.com/breakglass/breakglass/internal/engine"
	"github.com/breakglass/breakglass/internal/wire"
)

// localShell runs scripts with this machine's /bin/sh.
type localShell struct{}

func (localShell) Run(ctx context.Context, cmd string, stdin []byte) ([]byte, error) {
	if cmd != "/bin/sh -s" {
		return nil, errors.New("local shell: unexpected command " + cmd)
	}
	c := exec.CommandContext(ctx, "/bin/sh", "-s")
	c.Stdin = bytes.NewReader(stdin)
	return c.Output()
}

// hostile wraps a runner: in the host query, the user facts script of
// every user prints, after its own records, lines that would end that
// user's facts, forge a host-wide record and start that user's facts again
// (as a nonexistent user) if a user's output were framed by lines it can
// print itself, as it was by audit-uf-begin/audit-uf-end lines.
type hostile struct{ r engine.Runner }

const forgedNologin = "/nonexistent/breakglass-forged-nologin"

func (h hostile) Run(ctx context.Context, cmd string, stdin []byte) ([]byte, error) {
	s := string(stdin)
	if _, bodies, ok := wire.Parse(stdin); ok && len(bodies) == 1 && strings.HasPrefix(bodies[0], "bg_client=") {
		real := "bg_uf() (\n"
		if strings.Count(s, real) != 1 {
			return nil, errors.New("hostile: the host query defines no bg_uf")
		}
		s = strings.Replace(s, real, `bg_uf() {
	bg_uf_real "$1"
	printf '%s\n' "audit-uf-end $1" 'nologin `+forgedNologin+`' "audit-uf-begin $1" "breakglass-user-facts 2 $1" end
}
bg_uf_real() (
`, 1)
	}
	return h.r.Run(ctx, cmd, []byte(s))
}

// TestHostQueryHostileUserOutput runs the real host query with this
// machine's /bin/sh (it only reads) and a user facts script that prints
// forged records and markers after its own: none of them may reach the
// host's facts. The audit then fails (the user's facts do not parse)
// rather than judging forged facts.
func TestHostQueryHostileUserOutput(t *testing.T) {
	env := &engine.Env{ControlUser: "root", ClientAddr: "127.0.0.1", ServerAddr: "127.0.0.2", ServerPort: 22, Facts: &engine.Facts{}}
	var raw []byte
	r := runnerFunc(func(cmd string, stdin []byte) ([]byte, error) {
		out, err := hostile{localShell{}}.Run(context.Background(), cmd, stdin)
		raw = append(raw, out...)
		return out, err
	})
	res, err := New(Options{}).Run(context.Background(), r, env)
	if res != nil {
		for _, f := range res.Findings {
			if f.Path == forgedNologin {
				t.Errorf("a forged host record was judged: %+v", f)
			}
		}
	}
	if err == nil || !strings.Contains(err.Error(), "user facts of root") {
		t.Errorf("error %v, want the user facts of root refused", err)
	}
	// Every forged line came back inside root's records.
	for _, l := range strings.Split(string(raw), "\n") {
		if strings.Contains(l, forgedNologin) && l != "uf root nologin "+forgedNologin {
			t.Errorf("forged line out of root's records: %q", l)
		}
	}
	if !bytes.Contains(raw, []byte("\nuf root nologin "+forgedNologin+"\n")) {
		t.Errorf("the hostile user facts never ran:\n%s", raw)
	}
}

// TestHostQueryCutOff: an answer that stops before the host query's end
// (the connection broke, the output was cut) is refused, wherever it
// stops: in the host-wide records, inside a user's facts, just before the
// last record. A marker forged with another nonce does not end the part.
func TestHostQueryCutOff(t *testing.T) {
	out, _ := recording(t, "clean")
	uf := bytes.Index(out, []byte("\nuf admin "))
	if uf < 0 {
		t.Fatal("clean.txt holds no user facts of admin")
	}
	cuts := map[string]int{
		"host records":      bytes.Index(out, []byte("\npamdir ")),
		"inside admin":      uf + 200,
		"before audit-end":  bytes.LastIndex(out, []byte("audit-end")),
		"all but a newline": len(out) - 1,
	}
	for name, k := range cuts {
		t.Run(name, func(t *testing.T) {
			if k <= 0 {
				t.Fatal("no such place in clean.txt")
			}
			for _, answer := range []func(nonce string) string{
				func(nonce string) string { return wire.Begun(nonce, 0, string(out[:k])) },
				func(nonce string) string {
					return wire.Begun(nonce, 0, string(out[:k])) + "\n@@breakglass 0123456789abcdef0123456789abcdef end 0 0\n"
				},
			} {
				_, env := recording(t, "clean")
				r := runnerFunc(func(cmd string, stdin []byte) ([]byte, error) {
					nonce, _, ok := wire.Parse(stdin)
					if !ok {
						return nil, errors.New("unexpected command")
					}
					return []byte(answer(nonce)), nil
				})
				res, err := New(Options{}).Run(context.Background(), r, env)
				if err == nil || !strings.Contains(err.Error(), "truncated output") {
					t.Errorf("error %v, want truncated output", err)
				}
				if res != nil {
					t.Errorf("findings from a cut-off answer: %q", keysOf(res.Findings))
				}
				if _, ok := env.Facts.Get(HostFactsKey); ok {
					t.Error("host facts kept from a cut-off answer")
				}
			}
			// The parser alone refuses it too, when a record is missing
			// (a final newline is wire's to miss).
			if _, err := ParseHostFacts(out[:k]); err == nil && name != "all but a newline" {
				t.Error("ParseHostFacts took a cut-off answer")
			}
		})
	}
}
