package engine

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/breakglass/breakglass/internal/transport"
)

func TestParsePenalties(t *testing.T) {
	const def = "crash:90 authfail:5 noauth:1 grace-exceeded:10 refuseconnection:10 max:600 min:15 max-sources4:65536 max-sources6:65536 overflow:permissive overflow6:permissive"
	cases := []struct {
		setting, exempt, client string
		want                    penaltyRules
	}{
		{def, "", "127.0.0.1", penaltyRules{On: true, Known: true, AuthFail: 5 * time.Second, Min: 15 * time.Second, Max: 600 * time.Second}},
		{"authfail:1m max:2h min:30s", "", "10.0.0.1", penaltyRules{On: true, Known: true, AuthFail: time.Minute, Min: 30 * time.Second, Max: 2 * time.Hour}},
		{"authfail:2.5", "", "10.0.0.1", penaltyRules{On: true, Known: true, AuthFail: 2500 * time.Millisecond, Min: 15 * time.Second, Max: 600 * time.Second}},
		{"no", "", "127.0.0.1", penaltyRules{Known: true}},
		{"", "", "127.0.0.1", penaltyRules{Known: true}}, // OpenSSH before 9.8
		{def, "10.0.0.0/8,127.0.0.0/8", "127.0.0.1", penaltyRules{Known: true}},
		{def, "127.0.0.2", "127.0.0.1", penaltyRules{On: true, Known: true, AuthFail: 5 * time.Second, Min: 15 * time.Second, Max: 600 * time.Second}},
		{"authfail:0", "", "127.0.0.1", penaltyRules{Known: true, Min: 15 * time.Second, Max: 600 * time.Second}},
	}
	for _, c := range cases {
		if got := parsePenalties(c.setting, c.exempt, c.client); got != c.want {
			t.Errorf("ParsePenalties(%q, %q, %q) = %+v, want %+v", c.setting, c.exempt, c.client, got, c.want)
		}
	}
}

// penaltyHost is a fake sshd with PerSourcePenalties: it refuses the
// users in refuse (each refusal adds authfail to the address's penalty,
// enforced above min), and closes every connection before
// authentication while the penalty is enforced.
type penaltyHost struct {
	refuse        map[string]bool
	authfail, min time.Duration

	mu     sync.Mutex
	until  time.Time
	active bool
	calls  []string // user/path of every login that reached sshd's listener
	cut    int
}

func (h *penaltyHost) Login(ctx context.Context, user, keyFile string, p Path) (Runner, func() error, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	now := time.Now()
	if h.active && now.Before(h.until) {
		h.cut++
		return nil, nil, &transport.DialError{Target: "h", Stage: transport.StageHandshake, Err: io.EOF}
	}
	if now.After(h.until) {
		h.active, h.until = false, now
	}
	h.calls = append(h.calls, user+"/"+p.Name)
	if h.refuse[user] {
		h.until = h.until.Add(h.authfail)
		if time.Until(h.until) > h.min {
			h.active = true
		}
		return nil, nil, &transport.DialError{Target: "h", Stage: transport.StageAuth, Err: errors.New("ssh: unable to authenticate")}
	}
	return fixedRunner("breakglass-probe user=" + user + " sudo=ok\n"), func() error { return nil }, nil
}

func fastPenalties(t *testing.T, p penaltyRules) {
	t.Helper()
	old, oldEvery, oldSlack := defaultPenalties, penaltyRetryEvery, penaltySlack
	defaultPenalties, penaltyRetryEvery, penaltySlack = p, 10*time.Millisecond, 50*time.Millisecond
	t.Cleanup(func() { defaultPenalties, penaltyRetryEvery, penaltySlack = old, oldEvery, oldSlack })
}

// TestVerifyAccessNeverPenalisedIntoFalseResult: one locked-out user on
// three ways into the same sshd, logins one at a time with the locked-out
// user first. Before the gate, each of its logins was refused, the fourth
// refusal got the address penalised, and every healthy login after it was
// cut. Now sshd refuses it once, and everyone else is proven.
func TestVerifyAccessNeverPenalisedIntoFalseResult(t *testing.T) {
	fastPenalties(t, penaltyRules{On: true, AuthFail: 100 * time.Millisecond, Min: 250 * time.Millisecond, Max: 2 * time.Second})
	key := filepath.Join(t.TempDir(), "k")
	if err := os.WriteFile(key, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	// verify_access {min_working: 2, parallel: 1, logins: bad, bg-ops1,
	// bg-ops2, paths: [direct, {port: 22}, {address: 192.0.2.7}, {port: 2222}]}
	op := &VerifyLogins{
		Logins:   []Login{{User: "bad", KeyFile: key}, {User: "bg-ops1", KeyFile: key}, {User: "bg-ops2", KeyFile: key}},
		Paths:    []Path{{Name: "direct"}, {Name: "port 22", Port: 22}, {Name: "address 192.0.2.7", Address: "192.0.2.7"}, {Name: "port 2222", Port: 2222}},
		Need:     2,
		Parallel: 1,
	}
	host := &penaltyHost{refuse: map[string]bool{"bad": true}, authfail: 100 * time.Millisecond, min: 250 * time.Millisecond}
	// Earlier refusals (another run) leave a penalty just short of
	// enforcement: one more refusal from this run starts it.
	host.until = time.Now().Add(200 * time.Millisecond)
	env := &Env{Dial: GateLogins(host, nil, "192.0.2.7", 22)}
	res := &Result{}
	if err := op.Run(context.Background(), nil, env, res); err != nil {
		t.Fatalf("verify: %v\n%+v", err, res.Access)
	}
	for _, a := range res.Access {
		switch {
		case a.User != "bad" && !a.OK:
			t.Errorf("healthy %s over %s not proven: %s (%s)", a.User, a.Path, a.Error, a.Status)
		case a.User == "bad" && a.OK:
			t.Errorf("bad logged in over %s", a.Path)
		case a.User == "bad" && (a.Path == "port 22" || a.Path == "address 192.0.2.7") && a.Status != "not-repeated":
			t.Errorf("bad over %s: status %q, want not-repeated (the same sshd refused it over direct)", a.Path, a.Status)
		}
	}
	var bad []string
	for _, c := range host.calls {
		if strings.HasPrefix(c, "bad/") {
			bad = append(bad, c)
		}
	}
	// Once per sshd: the main one and port 2222's.
	if strings.Join(bad, " ") != "bad/direct bad/port 2222" {
		t.Errorf("logins of the locked-out user that reached sshd: %q", bad)
	}
	// Healthy users go first in every wave after bad's refusal.
	for i, c := range host.calls {
		if c == "bad/port 2222" && i != len(host.calls)-1 {
			t.Errorf("the locked-out user was not deferred to the end of its wave: %q", host.calls)
		}
	}
}

func TestLoginGateWaitsOutPenalty(t *testing.T) {
	fastPenalties(t, penaltyRules{On: true, AuthFail: 100 * time.Millisecond, Min: 250 * time.Millisecond, Max: 2 * time.Second})
	host := &penaltyHost{authfail: 100 * time.Millisecond, min: 250 * time.Millisecond}
	host.active, host.until = true, time.Now().Add(300*time.Millisecond)
	g := GateLogins(host, nil, "192.0.2.7", 22)
	start := time.Now()
	if _, _, err := g.Login(context.Background(), "bg-ops1", "k", Path{Name: "direct"}); err != nil {
		t.Fatalf("login after the penalty: %v", err)
	}
	if host.cut == 0 || time.Since(start) < 250*time.Millisecond {
		t.Errorf("the penalty never cut the login (%d cuts in %v): the test proves nothing", host.cut, time.Since(start))
	}

	// A penalty longer than it can have grown from is reported as such,
	// never as a refusal.
	host.active, host.until = true, time.Now().Add(5*time.Second)
	_, _, err := g.Login(context.Background(), "bg-ops1", "k", Path{Name: "direct"})
	if !errors.Is(err, ErrLoginPenalised) || LoginStatus(err) != "penalised" || !strings.Contains(err.Error(), "PerSourcePenaltyExemptList") {
		t.Fatalf("login under a long penalty: %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("waited %v for a penalty of at most %v", d, 2*time.Second)
	}

	// With penalties off (read from sshd -T), and on an sshd before 9.8,
	// which prints no persourcepenalties at all, a close before
	// authentication is returned at once.
	conn := Conn{Client: "127.0.0.1", Server: "127.0.0.2", Port: 22}
	for name, settings := range map[string]map[string]string{"penalties off": {"persourcepenalties": "no"}, "before 9.8": {}} {
		facts := &Facts{}
		facts.Set("user:admin", sshdView{conn: conn, known: true, settings: settings})
		g = GateLogins(host, facts, "192.0.2.7", 22)
		cuts := host.cut
		if _, _, err := g.Login(context.Background(), "bg-ops1", "k", Path{Name: "direct"}); errors.Is(err, ErrLoginPenalised) || !ClosedInHandshake(err) || host.cut != cuts+1 {
			t.Errorf("%s: %v after %d tries", name, err, host.cut-cuts)
		}
	}
}

// TestLoginGateForgetsRefusalsAfterAChange: a refused login is not made
// again, until a task changes the host (which may have fixed it).
func TestLoginGateForgetsRefusalsAfterAChange(t *testing.T) {
	host := &penaltyHost{refuse: map[string]bool{"bg-ops2": true}, authfail: time.Millisecond, min: time.Hour}
	g := GateLogins(host, nil, "192.0.2.7", 22)
	login := func() error {
		_, _, err := g.Login(context.Background(), "bg-ops2", "k", Path{Name: "direct"})
		return err
	}
	if err := login(); !loginRefused(err) {
		t.Fatalf("first login: %v", err)
	}
	if err := login(); !errors.Is(err, ErrLoginNotRepeated) || LoginStatus(err) != "not-repeated" {
		t.Fatalf("second login: %v", err)
	}
	g.(interface{ ForgetRefusals() }).ForgetRefusals()
	host.refuse["bg-ops2"] = false
	if err := login(); err != nil {
		t.Fatalf("after the change: %v", err)
	}
	if len(host.calls) != 2 {
		t.Errorf("logins that reached sshd: %q", host.calls)
	}
}

// TestProveAccessPutsLikelyRefusalsLast: the transaction's proof makes
// the logins of users whose facts show a lockout cause after the others.
func TestProveAccessPutsLikelyRefusalsLast(t *testing.T) {
	host := &penaltyHost{refuse: map[string]bool{"gone": true}, authfail: time.Millisecond, min: time.Hour}
	facts := &Facts{}
	// MaxStartups 3 lets one proof login run at a time.
	facts.Set("user:gone", sshdView{settings: map[string]string{"maxstartups": "3:30:100"}})
	env := &Env{ControlUser: "admin", Dial: host, Facts: facts, MinWorking: 1,
		Logins: []Login{{User: "gone", KeyFile: "/k"}, {User: "bg-ops1", KeyFile: "/k"}}}
	if _, err := proveAccess(context.Background(), env, Path{Name: "direct"}, time.Now().Add(time.Minute), nil, Doubt{"gone": "no such user"}); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(host.calls, " "); got != "admin/direct bg-ops1/direct gone/direct" {
		t.Errorf("order of the proof logins: %s", got)
	}
}

// sshdView is a fact holding sshd's effective settings for a connection,
// as a user's facts do (SSHDView): when known (sshd -T ran for the
// connection) a setting it lacks is one sshd does not print.
type sshdView struct {
	conn     Conn
	known    bool
	settings map[string]string
}

func (v sshdView) SSHDSetting(k string) (string, bool) { return v.settings[k], v.known }

func (v sshdView) SSHDConn() Conn { return v.conn }

// fixedRunner answers the probe command with its own text.
type fixedRunner string

func (f fixedRunner) Run(ctx context.Context, cmd string, stdin []byte) ([]byte, error) {
	if cmd != VerifyCommand {
		return nil, errors.New("unexpected command " + cmd)
	}
	return []byte(f), nil
}
