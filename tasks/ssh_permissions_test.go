package tasks

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

func TestNewSSHPermissionsRejects(t *testing.T) {
	for _, tc := range []struct{ src, want string }{
		{`{users: []}`, "play.yml:1:9: ssh_permissions: users: name at least one user"},
		{`{}`, "play.yml:1:1: ssh_permissions: users: name at least one user"},
		{`{users: [alice, "bob$(id)"]}`, `play.yml:1:17: ssh_permissions: invalid user name "bob$(id)"`},
		{`{users: [alice, alice]}`, "play.yml:1:17: ssh_permissions: user alice is listed twice"},
		{`{users: alice}`, "play.yml:1:9: expected a list"},
		{`{user: [alice]}`, `play.yml:1:2: unknown key "user"`},
	} {
		_, err := decodeTask(t, NewSSHPermissions, tc.src)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.src, err, tc.want)
		}
	}
}

// permPlan plans for the recorded facts and returns changes and commands.
func permPlan(t *testing.T, check bool, ufs ...*UserFacts) ([]string, [][][]string) {
	t.Helper()
	steps, err := planPermissions(ufs, check)
	if err != nil {
		t.Fatalf("plan: %v", err)
	}
	var what []string
	var words [][][]string
	for _, s := range steps {
		what = append(what, s.change.What)
		words = append(words, shellWords(t, s.cmd))
	}
	return what, words
}

func TestSSHPermissionsIncident(t *testing.T) {
	// chmod 777 on home and ~/.ssh, authorized_keys chowned to mallory:
	// exactly three repairs, top down, authorized_keys2's identical walk
	// not repeated.
	what, words := permPlan(t, false, recordedFacts(t, "incident", "bob"))
	wantWhat := []string{
		"chmod go-w /home/bob (0777 -> 0755)",
		"chmod go-w /home/bob/.ssh (0777 -> 0755)",
		"chown bob /home/bob/.ssh/authorized_keys (owner uid 1002 -> bob): sshd accepts only bob or root",
	}
	wantWords := [][][]string{
		{{"bg_chmod", "go-w", "/home/bob", "bob"}},
		{{"bg_chmod", "go-w", "/home/bob/.ssh", "bob"}},
		{{"bg_chown", "bob", "/home/bob/.ssh/authorized_keys"}},
	}
	if !reflect.DeepEqual(what, wantWhat) || !reflect.DeepEqual(words, wantWords) {
		t.Errorf("got\n %q\n %q\nwant\n %q\n %q", what, words, wantWhat, wantWords)
	}
}

func TestSSHPermissionsPlans(t *testing.T) {
	for _, tc := range []struct {
		name  string
		facts func(t *testing.T) []*UserFacts
		check bool
		want  []string
	}{
		{"converged", func(t *testing.T) []*UserFacts { return []*UserFacts{recordedFacts(t, "existing", "alice")} }, false, nil},
		// Outside home sshd walks to /: /srv/keys is group-writable.
		{"symlink out of home", func(t *testing.T) []*UserFacts { return []*UserFacts{recordedFacts(t, "symlink", "dave")} }, false,
			[]string{"chmod go-w /srv/keys (0775 -> 0755)"}},
		{"missing home", func(t *testing.T) []*UserFacts { return []*UserFacts{recordedFacts(t, "nohome", "erin")} }, false,
			[]string{"create home /home/erin of erin (owner erin, 0700)"}},
		// A user a task before this one would create.
		{"missing user, check mode", func(t *testing.T) []*UserFacts { return []*UserFacts{recordedFacts(t, "missing", "ghost")} }, true, nil},
		{"two users", func(t *testing.T) []*UserFacts {
			return []*UserFacts{recordedFacts(t, "existing", "alice"), recordedFacts(t, "incident", "bob")}
		}, false, []string{"chmod go-w /home/bob (0777 -> 0755)", "chmod go-w /home/bob/.ssh (0777 -> 0755)", "chown bob /home/bob/.ssh/authorized_keys (owner uid 1002 -> bob): sshd accepts only bob or root"}},
		// Outside home, a directory owned by someone else goes to root;
		// the key file itself to the user, who must read it.
		{"outside home", func(t *testing.T) []*UserFacts {
			uf := recordedFacts(t, "etcakf", "alice")
			kf := &uf.KeyFiles[0]
			kf.Walk[0] = PathStat{Path: kf.Walk[0].Path, Exists: true, UID: 1099, Mode: 0o100664}
			kf.Walk[1].UID, kf.Walk[1].Mode = uf.UID, 0o040777
			kf.Walk[2].UID = 1099
			return []*UserFacts{uf}
		}, false, []string{
			"chown root /etc/ssh (owner uid 1099 -> root): sshd accepts only alice or root",
			"chmod go-w /etc/ssh/authorized_keys (0777 -> 0755)",
			"chown alice /etc/ssh/authorized_keys/alice (owner uid 1099 -> alice): sshd accepts only alice or root",
			"chmod go-w /etc/ssh/authorized_keys/alice (0664 -> 0644)",
		}},
		// Group write is removed even when the group's sole member is the
		// owner (Debian would accept it; upstream OpenSSH would not).
		{"strict about group write", func(t *testing.T) []*UserFacts {
			uf := recordedFacts(t, "existing", "alice")
			uf.KeyFiles[0].Walk[0].Mode = 0o100660
			return []*UserFacts{uf}
		}, false, []string{"chmod go-w /home/alice/.ssh/authorized_keys (0660 -> 0640)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			what, _ := permPlan(t, tc.check, tc.facts(t)...)
			if !reflect.DeepEqual(what, tc.want) {
				t.Errorf("got  %q\nwant %q", what, tc.want)
			}
		})
	}
}

func TestSSHPermissionsRefuses(t *testing.T) {
	sticky := recordedFacts(t, "symlink", "dave")
	sticky.KeyFiles[0].Walk[2] = PathStat{Path: "/srv/keys", Exists: true, Mode: 0o041777}
	dirAsFile := recordedFacts(t, "existing", "alice")
	dirAsFile.KeyFiles[0].Walk[0].Mode = 0o040700
	// Two users whose walks cross: one home holds the other's key file.
	a, b := recordedFacts(t, "etcakf", "alice"), recordedFacts(t, "existing", "alice")
	b.Name, b.UID = "bob", 1003
	a.KeyFiles = []KeyFile{{Pattern: "x", Path: "/home/bob/k", Real: "/home/bob/k", Walk: []PathStat{
		{Path: "/home/bob/k", Exists: true, UID: 1002, Mode: 0o100600},
		{Path: "/home/bob", Exists: true, UID: 1004, Mode: 0o040755},
		{Path: "/home", Exists: true, Mode: 0o040755},
		{Path: "/", Exists: true, Mode: 0o040755},
	}}}
	b.KeyFiles = []KeyFile{{Pattern: "y", Path: "/home/bob/y", Real: "/home/bob/y", Walk: []PathStat{
		{Path: "/home/bob/y", Exists: false},
		{Path: "/home/bob", Exists: true, UID: 1004, Mode: 0o040755},
	}}}
	b.HomeReal = "/home/bob"
	for _, tc := range []struct {
		name  string
		check bool
		ufs   []*UserFacts
		want  string
	}{
		{"sticky dir", false, []*UserFacts{sticky}, "/srv/keys is a shared sticky directory (mode 1777)"},
		{"not a file", false, []*UserFacts{dirAsFile}, "/home/alice/.ssh/authorized_keys is not a regular file"},
		{"missing user", false, []*UserFacts{recordedFacts(t, "missing", "ghost")}, "user ghost does not exist"},
		{"broken sshd", true, []*UserFacts{recordedFacts(t, "broken", "alice")}, "sshd -T for alice: exit status 255"},
		{"conflict", false, []*UserFacts{a, b}, "/home/bob must belong to root for one user and to bob for another"},
	} {
		if _, err := planPermissions(tc.ufs, tc.check); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.name, err, tc.want)
		}
	}
}

func TestSSHPermissionsRunCheckMode(t *testing.T) {
	r := newFakeRunner()
	env := testEnv(recordedFacts(t, "incident", "bob"), recordedFacts(t, "existing", "alice"))
	env.Check = true
	m, err := decodeTask(t, NewSSHPermissions, `{users: [alice, bob]}`)
	if err != nil {
		t.Fatal(err)
	}
	res, err := runModule(context.Background(), r, env, m)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Changed || len(res.Changes) != 3 || len(r.calls) != 0 {
		t.Errorf("check mode: %d calls, %+v", len(r.calls), res)
	}
	env.Check = false
	if res, err = runModule(context.Background(), r, env, m); err != nil || len(res.Changes) != 3 || len(r.applied()) != 1 {
		t.Errorf("apply: %v, %d scripts, %+v", err, len(r.applied()), res)
	}
	for _, u := range []string{"alice", "bob"} {
		if _, ok := env.Facts.Get(UserFactsKey(u)); ok {
			t.Errorf("%s's facts not forgotten", u)
		}
	}
}

// TestIncidentOnLab is the original incident on a real host: a recursive
// chmod 777 on a home, a world-writable ~/.ssh and authorized_keys chowned
// to another user lock the user out. Check mode reports each repair and
// touches nothing; the repairs bring the login back; a second run changes
// nothing.
func TestIncidentOnLab(t *testing.T) {
	l, h, env := acctLab(t)
	r := h.Runner()
	key, pub := acctKeyPair(t, "bg@safe")
	acctRun(t, NewUser, `{name: bg}`, r, env)
	keyTask := fmt.Sprintf(`{user: bg, key: %q}`, pub)
	acctRun(t, NewAuthorizedKey, keyTask, r, env)
	acctMustLogin(t, l, h, "bg", key)

	acctSh(t, h, "chmod 777 /home/bg /home/bg/.ssh && chown admin /home/bg/.ssh/authorized_keys")
	if _, err := acctLogin(l, h, "bg", key); err == nil {
		t.Fatal("bg still logs in after the damage")
	}
	const statCmd = "stat -c '%n %a %U:%G %Y' /home/bg /home/bg/.ssh /home/bg/.ssh/authorized_keys"
	before := acctSh(t, h, statCmd)

	env.Check, env.Facts = true, &Facts{}
	res := acctRun(t, NewSSHPermissions, `{users: [bg]}`, r, env)
	want := []string{
		"chmod go-w /home/bg (0777 -> 0755)",
		"chmod go-w /home/bg/.ssh (0777 -> 0755)",
	}
	var got []string
	for _, c := range res.Changes {
		got = append(got, c.What)
	}
	if len(got) != 3 || !reflect.DeepEqual(got[:2], want) || !strings.HasPrefix(got[2], "chown bg /home/bg/.ssh/authorized_keys (owner uid ") {
		t.Errorf("check mode changes:\n%q", got)
	}
	if res := acctRun(t, NewAuthorizedKey, keyTask, r, env); len(res.Changes) != 2 {
		t.Errorf("authorized_key check mode: %+v", res.Changes) // chmod 0700 ~/.ssh, chown the file
	}
	if after := acctSh(t, h, statCmd); after != before {
		t.Fatalf("check mode changed the host:\n%s\nthen:\n%s", before, after)
	}

	env.Check, env.Facts = false, &Facts{}
	if res := acctRun(t, NewSSHPermissions, `{users: [bg]}`, r, env); len(res.Changes) != 3 {
		t.Errorf("repairs: %+v", res.Changes)
	}
	acctMustLogin(t, l, h, "bg", key)
	// The key task then tightens ~/.ssh to 0700: sshd accepted 0755.
	if res := acctRun(t, NewAuthorizedKey, keyTask, r, env); len(res.Changes) != 1 {
		t.Errorf("authorized_key repairs: %+v", res.Changes)
	}
	if got, want := acctSh(t, h, "stat -c '%a %U' /home/bg /home/bg/.ssh /home/bg/.ssh/authorized_keys"), "755 bg\n700 bg\n600 bg\n"; got != want {
		t.Errorf("after repairs:\n%s\nwant:\n%s", got, want)
	}

	env.Facts = &Facts{}
	for _, tk := range []struct {
		f   Factory
		src string
	}{{NewSSHPermissions, `{users: [bg]}`}, {NewAuthorizedKey, keyTask}} {
		if res := acctRun(t, tk.f, tk.src, r, env); res.Changed {
			t.Errorf("second run of %s: %+v", tk.src, res.Changes)
		}
	}
}
