package engine

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"github.com/breakglass/breakglass/internal/wire"
)

// fakeHost is a fake host for the engine's unit tests: it records every
// command with its stdin and answers with the first rule whose marker
// occurs in the script; a round trip of several parts (wire) has each
// part answered by its rule.
type fakeHost struct {
	mu    sync.Mutex
	rules []fakeRule
	calls []string // cmd + "\n" + stdin
}

type fakeRule struct {
	marker, out string
	err         error
}

func (r *fakeHost) on(marker, out string, err error) *fakeHost {
	r.rules = append(r.rules, fakeRule{marker, out, err})
	return r
}

func (r *fakeHost) Run(_ context.Context, cmd string, stdin []byte) ([]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	all := cmd + "\n" + string(stdin)
	r.calls = append(r.calls, all)
	if nonce, bodies, ok := wire.Parse(stdin); ok {
		var out strings.Builder
		for i, body := range bodies {
			rule, ok := r.answer(body)
			if !ok || rule.err != nil {
				out.WriteString(wire.Begun(nonce, i, ""))
				return []byte(out.String()), fmt.Errorf("fake host: no answer for part %d %q", i, FirstLine(body))
			}
			out.WriteString(wire.Reply(nonce, i, rule.out, 0))
		}
		return []byte(out.String()), nil
	}
	if rule, ok := r.answer(all); ok {
		return []byte(rule.out), rule.err
	}
	return nil, fmt.Errorf("fake host: no answer for %q", FirstLine(all))
}

func (r *fakeHost) answer(script string) (fakeRule, bool) {
	for _, rule := range r.rules {
		if strings.Contains(script, rule.marker) {
			return rule, true
		}
	}
	return fakeRule{}, false
}

// shellSyntax checks script with sh -n (and dash and bash, where they are).
func shellSyntax(t *testing.T, name string, script []byte) {
	t.Helper()
	for _, sh := range []string{"sh", "dash", "bash"} {
		if _, err := exec.LookPath(sh); err != nil {
			continue
		}
		cmd := exec.Command(sh, "-n")
		cmd.Stdin = strings.NewReader(string(script))
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("%s: %s -n: %v: %s", name, sh, err, out)
		}
	}
}
