package tasks

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/breakglass/breakglass/internal/engine"
	"github.com/breakglass/breakglass/internal/lab"
	"github.com/breakglass/breakglass/internal/transport"
)

// transportDialer opens fresh logins with breakglass's own SSH transport,
// as a real run does, so that its typed errors reach ProveAccess.
type transportDialer struct {
	d    *transport.Dialer
	h    *lab.Host
	ctrl string // the control user's key
}

func (t transportDialer) Login(ctx context.Context, user, keyFile string, p Path) (Runner, func() error, error) {
	if keyFile == "" {
		keyFile = t.ctrl
	}
	port := t.h.Port
	if p.Port != 0 {
		port = p.Port
	}
	c, err := t.d.Dial(ctx, transport.Target{Name: t.h.Name, Host: t.h.Addr, Port: port, User: user,
		IdentityFiles: []string{keyFile}, NoAgent: true, IdentitiesOnly: true})
	if err != nil {
		return nil, nil, err
	}
	return c, c.Close, nil
}

// TestSSHDOnHostFiftyLogins: a harmless change on a host with 50
// break-glass logins, all required, and sshd's default MaxStartups
// (10:30:100). Opening all 51 proof logins at once made sshd drop some
// before authentication, and the change was rolled back; bounded proof
// logins keep it.
func TestSSHDOnHostFiftyLogins(t *testing.T) {
	t.Parallel()
	const n = 50
	l := lab.New(t, 1)
	h := l.Hosts[0]
	dir := t.TempDir()
	var script strings.Builder
	var logins []Login
	for i := range n {
		u := fmt.Sprintf("bg-many%02d", i)
		key := filepath.Join(dir, u)
		if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", u, "-f", key).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen: %v: %s", err, out)
		}
		pub, err := os.ReadFile(key + ".pub")
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&script, "useradd -m -s /bin/sh -p '*' %[1]s && install -d -m 0700 -o %[1]s -g %[1]s /home/%[1]s/.ssh &&\n"+
			"printf '%%s\\n' '%[2]s' >/home/%[1]s/.ssh/authorized_keys && chown %[1]s:%[1]s /home/%[1]s/.ssh/authorized_keys || exit 1\n",
			u, strings.TrimSpace(string(pub)))
		logins = append(logins, Login{User: u, KeyFile: key})
	}
	if out, err := h.Exec(context.Background(), script.String(), nil); err != nil {
		t.Fatalf("creating users: %v: %s", err, out)
	}
	if out, err := h.Exec(context.Background(), "sshd -T | grep -i '^maxstartups '", nil); err != nil || strings.TrimSpace(string(out)) != "maxstartups 10:30:100" {
		t.Fatalf("the lab host's MaxStartups is not the default: %q %v", out, err)
	}
	// The sshd module's facts carry the value the bound is taken from.
	if out, err := h.Exec(context.Background(), sshdQuery().Script, nil); err != nil {
		t.Fatal(err)
	} else if f := parseSSHDFactsT(t, string(out)); f.MaxStartups != "10:30:100" || f.PerSourceMaxStartups != "none" {
		t.Errorf("sshd facts: MaxStartups %q PerSourceMaxStartups %q", f.MaxStartups, f.PerSourceMaxStartups)
	}
	d, err := transport.NewDialer(transport.Config{KnownHostsFile: l.KnownHosts, ConnectTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	env := &Env{Host: h.Name, ControlUser: "admin", Dial: transportDialer{d, h, l.AdminKey}, Facts: &Facts{},
		ClientAddr: "127.0.0.1", ServerAddr: h.Addr, ServerPort: h.Port, Logins: logins, MinWorking: n}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	start := time.Now()
	res, err := runModule(ctx, h.Runner(), env, mustSSHD(t, `{settings: {LogLevel: VERBOSE}}`))
	t.Logf("sshd change with %d proof logins: %s", n+1, time.Since(start).Round(time.Millisecond))
	if err != nil {
		t.Fatalf("a harmless change was not kept: %v", err)
	}
	if !res.Changed || res.RolledBack || !strings.Contains(res.Changes[0].What, "fresh logins ok: admin (control), bg-many00") {
		t.Errorf("result %+v", res)
	}
	out, err := h.Exec(context.Background(), "sshd -T | grep -i '^loglevel'; grep -c 'drop connection' /var/log/auth.log || :", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(out); got != "loglevel VERBOSE\n0\n" {
		t.Errorf("effective LogLevel and sshd's MaxStartups drops: %q, want VERBOSE and none", got)
	}
}

// TestSSHDFactsStartups: the sshd module's facts carry MaxStartups and
// PerSourceMaxStartups from the sshd -T it runs anyway.
func TestSSHDFactsStartups(t *testing.T) {
	f := parseSSHDFactsT(t, sshdFactsOut(debianMain, nil, "maxstartups 10:30:100\npersourcemaxstartups none\n"))
	if f.MaxStartups != "10:30:100" || f.PerSourceMaxStartups != "none" {
		t.Errorf("MaxStartups %q PerSourceMaxStartups %q", f.MaxStartups, f.PerSourceMaxStartups)
	}
	if st, ps := f.StartupLimits(); st != "10:30:100" || ps != "none" {
		t.Errorf("StartupLimits (what the prover bounds its logins by): %q %q", st, ps)
	}
}

// TestProbeCommandsUnchanged pins the probe one-liners that
// probe_login.sh and probe_key.sh carry: the probe's line is parsed from
// recorded outputs (testdata/facts/probe), and ProbeCommand is written
// into users' authorized_keys files, so any change to either text must be
// deliberate.
func TestProbeCommandsUnchanged(t *testing.T) {
	for name, tt := range map[string]struct{ got, want string }{
		"engine.VerifyCommand": {engine.VerifyCommand, `printf '` + engine.ProbeOutputPrefix + ` user=%s sudo=' "${LOGNAME:-$(id -un)}"; if sudo -n true </dev/null >/dev/null 2>&1; then echo ok; else echo no; fi`},
		"ProbeCommand":         {ProbeCommand, `echo ` + engine.ProbeOutputPrefix + ` user=$(id -un) sudo=$(sudo -n true </dev/null >/dev/null 2>&1 && echo ok || echo no)`},
	} {
		if tt.got != tt.want {
			t.Errorf("%s = %q, want %q", name, tt.got, tt.want)
		}
	}
	for _, bad := range []string{"# only a comment\n\n", "echo a\necho b\n"} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("engine.CommandLine(%q) did not panic", bad)
				}
			}()
			engine.CommandLine(bad)
		}()
	}
}
