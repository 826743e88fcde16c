package tasks

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/breakglass/breakglass/internal/engine"
)

// fakeLogins answers logins from a table: user/path → (probe output, error).
type fakeLogins struct {
	answers map[string]string
	fail    map[string]error
}

type fixedRunner string

func (f fixedRunner) Run(ctx context.Context, cmd string, stdin []byte) ([]byte, error) {
	if cmd != engine.VerifyCommand {
		return nil, errors.New("unexpected command " + cmd)
	}
	return []byte(f), nil
}

func (f *fakeLogins) Login(ctx context.Context, user, keyFile string, p Path) (Runner, func() error, error) {
	k := user + "/" + p.Name
	if err := f.fail[k]; err != nil {
		return nil, nil, err
	}
	return fixedRunner(f.answers[k]), func() error { return nil }, nil
}

func decodeVerify(t *testing.T, src string) (*VerifyAccess, error) {
	t.Helper()
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(src), &n); err != nil {
		t.Fatal(err)
	}
	f, _ := Lookup("verify_access")
	m, err := f("pb.yml", n.Content[0])
	if err != nil {
		return nil, err
	}
	return m.(*VerifyAccess), nil
}

func TestVerifyAccess(t *testing.T) {
	dir := t.TempDir()
	for _, k := range []string{"k1", "k2"} {
		if err := os.WriteFile(filepath.Join(dir, k), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	v, err := decodeVerify(t, `{sudo: true, min_working: 1, logins: [{user: bg-ops1, key_file: k1}, {user: bg-ops2, key_file: k2}], paths: [direct, {port: 2222}]}`)
	if err != nil {
		t.Fatal(err)
	}
	logins := &fakeLogins{
		answers: map[string]string{
			"bg-ops1/direct":    "breakglass-probe user=bg-ops1 sudo=ok\n",
			"bg-ops1/port 2222": "breakglass-probe user=bg-ops1 sudo=ok\n",
			"bg-ops2/direct":    "breakglass-probe user=bg-ops2 sudo=no\n",
		},
		fail: map[string]error{"bg-ops2/port 2222": errors.New("ssh: unable to authenticate")},
	}
	env := &Env{Dir: dir, Dial: logins}
	res, err := runModule(context.Background(), nil, env, v)
	if err != nil {
		t.Fatalf("min_working 1 with one good user: %v", err)
	}
	if len(res.Access) != 4 {
		t.Fatalf("rows: %+v", res.Access)
	}
	ok := 0
	for _, a := range res.Access {
		if a.OK {
			ok++
		}
	}
	if ok != 3 || res.Access[2].Sudo == nil || *res.Access[2].Sudo || !strings.Contains(res.Access[3].Error, "unable to authenticate") {
		t.Fatalf("rows: %+v", res.Access)
	}

	two := 2
	v.MinWorking = &two
	if _, err := runModule(context.Background(), nil, env, v); err == nil || !strings.Contains(err.Error(), "failing: bg-ops2") {
		t.Fatalf("min_working 2: want failure naming bg-ops2, got %v", err)
	}
}

func TestVerifyAccessDecodeErrors(t *testing.T) {
	for src, want := range map[string]string{
		`{logins: []}`:                                                    "logins: is empty",
		`{logins: [{user: "a;b", key_file: k}]}`:                          "invalid user name",
		`{logins: [{user: a, key_file: k}], paths: [sideways]}`:           "want direct",
		`{logins: [{user: a, key_file: k}], paths: [{port: 1, jump: b}]}`: "exactly one",
		`{logins: [{user: a, key_file: k}], min_working: 3}`:              "min_working 3",
		`{logins: [{user: a, key_file: k}], colour: 1}`:                   `unknown key "colour"`,
	} {
		if _, err := decodeVerify(t, src); err == nil || !strings.Contains(err.Error(), want) || !strings.HasPrefix(err.Error(), "pb.yml:1:") {
			t.Errorf("%s: got %v, want positioned %q", src, err, want)
		}
	}
}

func TestParseProbe(t *testing.T) {
	u, s, ok := engine.ParseProbe([]byte("motd noise\nbreakglass-probe user=admin sudo=ok\n"))
	if !ok || u != "admin" || !s {
		t.Fatalf("got %q %v %v", u, s, ok)
	}
	if _, _, ok := engine.ParseProbe([]byte("This account is currently not available.\n")); ok {
		t.Fatal("nologin output parsed as a probe answer")
	}
}
