package engine

import (
	"context"
	"testing"
)

// TestGatherKeepsWhatAnswered: the runner's gathering runs every task's
// queries in one round trip; a query that fails (exit status, no parse)
// is not kept, so that planning runs it again and reports its error, and
// the others are kept. Output that looks like the framing stays data.
func TestGatherKeepsWhatAnswered(t *testing.T) {
	text := func(b []byte) (any, error) { return string(b), nil }
	qs := []Query{
		{Key: "ok", Script: "echo fine", Parse: text},
		{Key: "bad", Script: "echo partial; exit 3", Parse: text},
		{Key: "unparsed", Script: "echo x", Parse: func([]byte) (any, error) { return nil, context.Canceled }},
		{Key: "lookalike", Script: "echo 'BREAKGLASS_EOF here'; printf 'no newline'", Parse: text},
	}
	r := &countingRunner{}
	env := &Env{Facts: &Facts{}}
	NewExecutor(r, env).Gather(context.Background(), append(qs, qs...))
	if r.n != 1 {
		t.Errorf("%d round trips, want 1", r.n)
	}
	for key, want := range map[string]string{"ok": "fine\n", "lookalike": "BREAKGLASS_EOF here\nno newline"} {
		if v, _ := env.Facts.Get(key); v != want {
			t.Errorf("%s: %q, want %q", key, v, want)
		}
	}
	for _, key := range []string{"bad", "unparsed"} {
		if v, ok := env.Facts.Get(key); ok {
			t.Errorf("%s kept: %q", key, v)
		}
	}
}

// TestFactGathersAsPlansDo: a fact a Program asks for on its own
// (Env.Fact, as recover does) is gathered as a plan's are: with the
// prelude its kind shares, and once.
func TestFactGathersAsPlansDo(t *testing.T) {
	shared := &Shared{Prelude: func(Conn, *Facts, []Query) string { return "bg_kind=shared\n" }}
	q := Query{Key: "k", Script: `echo "kind: $bg_kind"`, Shared: shared,
		Parse: func(b []byte) (any, error) { return string(b), nil }}
	r := &countingRunner{}
	env := &Env{}
	for range 2 {
		v, err := env.Fact(context.Background(), r, q)
		if err != nil || v != "kind: shared\n" {
			t.Fatalf("fact %q, %v", v, err)
		}
	}
	if r.n != 1 {
		t.Errorf("%d round trips, want 1", r.n)
	}
}
