package tasks

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/breakglass/breakglass/internal/lab"
	"github.com/breakglass/breakglass/internal/yamlx"
)

// decodeTask decodes a module's arguments written as YAML, as the playbook
// loader would, from a file called play.yml.
func decodeTask(t *testing.T, f Factory, src string) (Module, error) {
	t.Helper()
	n, err := yamlx.ParseFile("play.yml", []byte(src))
	if err != nil {
		t.Fatalf("parse %q: %v", src, err)
	}
	return f("play.yml", n)
}

func mustUser(t *testing.T, src string) *User {
	t.Helper()
	m, err := decodeTask(t, NewUser, src)
	if err != nil {
		t.Fatalf("decode %q: %v", src, err)
	}
	return m.(*User)
}

func TestNewUserRejects(t *testing.T) {
	for _, tc := range []struct {
		src  string
		want []string // each must appear in the error
	}{
		{`{name: "bg; rm -rf /"}`, []string{`play.yml:1:8: user: invalid user name "bg; rm -rf /"`}},
		{`{name: "$(reboot)"}`, []string{`play.yml:1:8: user: invalid user name`}},
		{`{name: Admin}`, []string{`play.yml:1:8: user: invalid user name`}},
		{`{shell: /bin/bash}`, []string{`play.yml:1:1: user: name is required`}},
		{`{name: bg, shel: /bin/bash}`, []string{`play.yml:1:12: unknown key "shel"`}},
		{`{name: bg, state: gone}`, []string{`play.yml:1:19: user: state "gone"`}},
		{`{name: bg, shell: bash}`, []string{`play.yml:1:19: user: shell: invalid path "bash": must be absolute`}},
		{`{name: bg, home: /home/../etc}`, []string{`play.yml:1:18: user: home: invalid path`}},
		{`{name: bg, comment: "ops: on call"}`, []string{`play.yml:1:21: user: comment "ops: on call": no ':'`}},
		{"{name: bg, comment: \"a\\nb\"}", []string{`play.yml:1:21: user: comment`}},
		{`{name: bg, groups: [sudo, "wheel;id", sudo]}`, []string{`play.yml:1:27: user: invalid group name "wheel;id"`, `play.yml:1:39: user: group sudo is listed twice`}},
		{`{name: bg, groups: sudo}`, []string{`play.yml:1:20: expected a list`}},
		// Every input error at once.
		{"name: BAD\nshell: sh\nstate: x\n", []string{"play.yml:1:7:", "play.yml:2:8:", "play.yml:3:8:"}},
	} {
		_, err := decodeTask(t, NewUser, tc.src)
		if err == nil {
			t.Errorf("%s: decoded without error", tc.src)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not contain %q", tc.src, err, w)
			}
		}
	}
}

// userHostFrom is a userHost with the recorded facts of file and the
// usual shells present.
func userHostFrom(t *testing.T, file, user string) userHost {
	t.Helper()
	return userHost{
		user: recordedFacts(t, file, user),
		paths: map[string]PathStat{
			"/bin/bash": {Path: "/bin/bash", Exists: true, Mode: 0o100755},
			"/bin/sh":   {Path: "/bin/sh", Exists: true, Mode: 0o100755},
			"/bin/zsh":  {Path: "/bin/zsh", Exists: true, Mode: 0o100644},
			"/srv/home": {Path: "/srv/home", Exists: true, UID: 0, Mode: 0o040755},
		},
		groups: map[string]bool{"sudo": true, "adm": true, "alice": true},
	}
}

// planWords plans and returns, for each step, its change and the words of
// every command it runs.
func planWords(t *testing.T, u *User, h userHost) ([]string, [][][]string) {
	t.Helper()
	steps, err := u.planSteps(h, "admin")
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

func TestUserPlan(t *testing.T) {
	for _, tc := range []struct {
		name, src, file, user string
		want                  [][][]string // per step, the commands' words
		wantWhat              []string     // substrings of each change
	}{
		{
			name: "create key-only user", src: `{name: ghost, shell: /bin/bash, groups: [sudo, adm], comment: "Ghost, on call"}`,
			file: "missing", user: "ghost",
			want:     [][][]string{{{"useradd", "-m", "-d", "/home/ghost", "-s", "/bin/bash", "-p", "*", "-e", "", "-f", "-1", "-K", "PASS_MAX_DAYS=-1", "-c", "Ghost, on call", "-G", "sudo,adm", "ghost"}}},
			wantWhat: []string{"create user ghost (home /home/ghost, shell /bin/bash, groups sudo, adm; key-only"},
		},
		{
			name: "create without shell picks bash", src: `{name: ghost, home: /srv/home}`,
			file: "missing", user: "ghost",
			want: [][][]string{
				{{"useradd", "-m", "-d", "/srv/home", "-s", "/bin/bash", "-p", "*", "-e", "", "-f", "-1", "-K", "PASS_MAX_DAYS=-1", "ghost"}},
				// The home existed before: useradd -m leaves it to root.
				{{"bg_chown", "ghost:", "/srv/home"}},
			},
			wantWhat: []string{"create user ghost", "chown ghost: /srv/home (owner uid 0, it existed before the user)"},
		},
		{
			name: "converged", src: `{name: alice, shell: /bin/bash}`, file: "existing", user: "alice",
		},
		{
			name: "locked, expired, forced change, no shell", src: `{name: carol}`, file: "locked", user: "carol",
			want: [][][]string{
				{{"usermod", "-s", "/bin/bash", "carol"}},
				{{"usermod", "-p", "*", "carol"}},
				{{"chage", "-d", "20782", "carol"}},
				{{"chage", "-M", "-1", "carol"}},
				{{"chage", "-E", "-1", "carol"}},
			},
			wantWhat: []string{
				"set login shell of carol to /bin/bash (was /nonexistent/shell, which does not exist)",
				"set password field of carol to '*' (was locked with '!'",
				"stop forcing a password change on carol",
				"remove password ageing of carol (it has no password",
				"remove account expiry of carol (expired on 2022-01-08)",
			},
		},
		{
			name: "password aged out", src: `{name: carol, shell: /bin/sh}`, file: "aged", user: "carol",
			want: [][][]string{
				{{"usermod", "-s", "/bin/sh", "carol"}},
				{{"chage", "-M", "-1", "carol"}},
			},
			wantWhat: []string{"set login shell", "remove password ageing of carol (the password aged out on 2023-08-21"},
		},
		{
			name: "groups comment home", src: `{name: alice, groups: [alice, sudo, adm], comment: "Alice A", home: /srv/alice}`,
			file: "existing", user: "alice",
			want: [][][]string{
				{{"usermod", "-d", "/srv/alice", "alice"}},
				{{"usermod", "-c", "Alice A", "alice"}},
				{{"usermod", "-a", "-G", "sudo,adm", "alice"}},
				{{"bg_mkparents", "/srv"}, {"bg_mkdir", "0700", "/srv/alice", "alice:"}},
			},
			wantWhat: []string{"set home of alice to /srv/alice (was /home/alice)", `set comment of alice to "Alice A" (was "")`, "add alice to group sudo, adm", "create home /srv/alice of alice"},
		},
		{
			name: "missing home", src: `{name: erin}`, file: "nohome", user: "erin",
			want: [][][]string{{{"bg_mkparents", "/home"}, {"bg_mkdir", "0700", "/home/erin", "erin:"}}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			what, words := planWords(t, mustUser(t, tc.src), userHostFrom(t, tc.file, tc.user))
			if len(tc.want) == 0 && len(words) == 0 {
				return
			}
			if !reflect.DeepEqual(words, tc.want) {
				t.Errorf("commands:\n got %q\nwant %q", words, tc.want)
			}
			for i, w := range tc.wantWhat {
				if i >= len(what) || !strings.Contains(what[i], w) {
					t.Errorf("change %d = %q, want it to contain %q", i, what, w)
				}
			}
		})
	}
}

func TestUserPlanNoLoginShell(t *testing.T) {
	h := userHostFrom(t, "existing", "alice")
	h.user.Shell = "/usr/sbin/nologin"
	h.user.ShellStat = PathStat{Path: "/usr/sbin/nologin", Exists: true, Mode: 0o100755}
	what, words := planWords(t, mustUser(t, `{name: alice}`), h)
	if len(words) != 1 || !reflect.DeepEqual(words[0], [][]string{{"usermod", "-s", "/bin/bash", "alice"}}) || !strings.Contains(what[0], "which refuses logins") {
		t.Errorf("got %q %q", what, words)
	}
	// Asked for explicitly, nologin is the user's choice.
	h.paths["/usr/sbin/nologin"] = h.user.ShellStat
	if _, words := planWords(t, mustUser(t, `{name: alice, shell: /usr/sbin/nologin}`), h); len(words) != 0 {
		t.Errorf("explicit nologin: %q", words)
	}
}

func TestUserPlanRefuses(t *testing.T) {
	for _, tc := range []struct{ src, file, user, want string }{
		{`{name: alice, groups: [wheel]}`, "existing", "alice", "group wheel does not exist"},
		{`{name: alice, shell: /bin/zsh}`, "existing", "alice", "shell /bin/zsh does not exist or is not an executable file"},
		{`{name: alice, shell: /bin/fish}`, "existing", "alice", "shell /bin/fish does not exist"},
		{`{name: admin, state: absent}`, "existing", "admin", "refusing to remove the user this run is connected as"},
	} {
		h := userHostFrom(t, tc.file, "alice")
		h.user.Name = tc.user
		_, err := mustUser(t, tc.src).planSteps(h, "admin")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.src, err, tc.want)
		}
	}
	h := userHostFrom(t, "existing", "alice")
	h.user.Name = "admin"
	if _, err := mustUser(t, `{name: admin, state: absent}`).planSteps(h, "admin"); !errors.Is(err, ErrControlUser) {
		t.Errorf("removing the control user: %v, want ErrControlUser", err)
	}
	h.user.Name, h.user.UID = "toor", 0
	if _, err := mustUser(t, `{name: toor, state: absent}`).planSteps(h, "admin"); err == nil || !strings.Contains(err.Error(), "uid 0") {
		t.Errorf("removing a uid 0 account: %v", err)
	}
}

func TestUserAbsent(t *testing.T) {
	what, words := planWords(t, mustUser(t, `{name: alice, state: absent}`), userHostFrom(t, "existing", "alice"))
	if !reflect.DeepEqual(words, [][][]string{{{"userdel", "alice"}}}) || what[0] != "remove user alice (home /home/alice kept)" {
		t.Errorf("got %q %q", what, words)
	}
	if _, words := planWords(t, mustUser(t, `{name: ghost, state: absent}`), userHostFrom(t, "missing", "ghost")); len(words) != 0 {
		t.Errorf("absent user: %q", words)
	}
}

func TestUserInjectionStaysOneWord(t *testing.T) {
	comment := `x' "$(touch /tmp/pwned)" ; rm -rf / ` + "`id`" + ` \ $HOME`
	u := &User{Name: "alice", State: "present", Comment: comment}
	_, words := planWords(t, u, userHostFrom(t, "existing", "alice"))
	if len(words) != 1 || !reflect.DeepEqual(words[0], [][]string{{"usermod", "-c", comment, "alice"}}) {
		t.Errorf("got %q", words)
	}
}

func TestUserRunCheckAndApply(t *testing.T) {
	r := newFakeRunner()
	env := testEnv(recordedFacts(t, "locked", "carol"))
	for _, p := range []string{"/bin/bash", "/bin/sh"} {
		env.Facts.Set(PathFactsKey(p), PathStat{Path: p, Exists: true, Mode: 0o100755})
	}
	u := mustUser(t, `{name: carol}`)

	env.Check = true
	res, err := runModule(context.Background(), r, env, u)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Changed || len(res.Changes) != 5 {
		t.Errorf("check mode: %+v", res)
	}
	if len(r.calls) != 0 {
		t.Errorf("check mode ran %d commands: %q", len(r.calls), r.calls)
	}

	env.Check = false
	res, err = runModule(context.Background(), r, env, u)
	if err != nil {
		t.Fatal(err)
	}
	if applied := r.applied(); len(applied) != 1 || len(r.calls) != 1 || len(res.Changes) != 5 {
		t.Fatalf("apply: %d scripts of %d calls, result %+v", len(applied), len(r.calls), res)
	}
	if _, ok := env.Facts.Get(UserFactsKey("carol")); ok {
		t.Error("carol's facts were not forgotten after the change")
	}
}

// TestUserRunGathers runs the module without gathered facts: one round
// trip for every fact, one for the change.
func TestUserRunGathers(t *testing.T) {
	r := newFakeRunner()
	r.users["ghost"] = mustRead(t, "testdata/userfacts/missing.txt")
	r.paths["/bin/bash"] = PathStat{Path: "/bin/bash", Exists: true, Mode: 0o100755}
	r.groups["sudo"] = true
	env := testEnv()
	env.Facts = nil
	res, err := runModule(context.Background(), r, env, mustUser(t, `{name: ghost, groups: [sudo]}`))
	if err != nil {
		t.Fatal(err)
	}
	if len(r.calls) != 2 || len(r.applied()) != 1 || len(res.Changes) != 1 || !strings.HasPrefix(res.Changes[0].What, "create user ghost") {
		t.Errorf("calls %d, result %+v", len(r.calls), res)
	}
}

// TestTwoUsersOnLab is the new-server case on a real host: two key-only
// break-glass users, their keys and the permissions sshd wants; the plain
// OpenSSH client proves both log in; a second run changes nothing.
func TestTwoUsersOnLab(t *testing.T) {
	l, h, env := acctLab(t)
	r := h.Runner()
	key1, pub1 := acctKeyPair(t, "ops1@safe")
	key2, pub2 := acctKeyPair(t, "ops2@safe")
	type task struct {
		f   Factory
		src string
	}
	tasks := []task{
		{NewUser, `{name: bg-ops1, shell: /bin/bash}`},
		{NewUser, `{name: bg-ops2, shell: /bin/bash, groups: [sudo], comment: "Ops Two"}`},
		{NewAuthorizedKey, fmt.Sprintf(`{user: bg-ops1, keys: [%q], exclusive: true}`, pub1)},
		{NewAuthorizedKey, fmt.Sprintf(`{user: bg-ops2, key: %q}`, pub2)},
		{NewSSHPermissions, `{users: [bg-ops1, bg-ops2, admin]}`},
	}
	runAll := func(check bool) []*Result {
		env.Check, env.Facts = check, &Facts{}
		var out []*Result
		for _, tk := range tasks {
			out = append(out, acctRun(t, tk.f, tk.src, r, env))
		}
		return out
	}
	if _, err := acctLogin(l, h, "bg-ops1", key1); err == nil {
		t.Fatal("bg-ops1 logs in before it exists")
	}

	// Check mode reports the plan and creates nothing.
	for i, res := range runAll(true)[:4] {
		if !res.Changed {
			t.Errorf("check mode, task %d: no change reported", i)
		}
	}
	if out, err := h.Exec(context.Background(), "getent passwd bg-ops1", nil); err == nil {
		t.Fatalf("check mode created bg-ops1: %s", out)
	}

	for i, res := range runAll(false)[:4] {
		if !res.Changed {
			t.Errorf("task %d: no change", i)
		}
	}
	acctMustLogin(t, l, h, "bg-ops1", key1)
	acctMustLogin(t, l, h, "bg-ops2", key2)
	acctMustLogin(t, l, h, lab.AdminUser, l.AdminKey)
	if _, err := acctLogin(l, h, "bg-ops1", key2); err == nil {
		t.Error("bg-ops1 logs in with bg-ops2's key")
	}
	got := acctSh(t, h, `for u in bg-ops1 bg-ops2; do getent shadow $u | cut -d: -f2,5,8; stat -c '%U %a' /home/$u /home/$u/.ssh /home/$u/.ssh/authorized_keys; done; id -Gn bg-ops2; getent passwd bg-ops2 | cut -d: -f5,7`)
	want := "*::\nbg-ops1 755\nbg-ops1 700\nbg-ops1 600\n*::\nbg-ops2 755\nbg-ops2 700\nbg-ops2 600\nbg-ops2 sudo\nOps Two:/bin/bash\n"
	if got != want {
		t.Errorf("host state:\n%s\nwant:\n%s", got, want)
	}

	for i, res := range runAll(false) {
		if res.Changed {
			t.Errorf("second run, task %d changed: %+v", i, res.Changes)
		}
	}
}

// TestUserRepairsOnLab breaks an existing account the ways sshd and PAM
// enforce, and checks the user task brings its login back.
func TestUserRepairsOnLab(t *testing.T) {
	l, h, env := acctLab(t)
	r := h.Runner()
	key, pub := acctKeyPair(t, "bg@safe")
	acctRun(t, NewUser, `{name: bg}`, r, env)
	acctRun(t, NewAuthorizedKey, fmt.Sprintf(`{user: bg, key: %q}`, pub), r, env)
	acctMustLogin(t, l, h, "bg", key)

	// Locked password (which only matters with UsePAM no), missing shell,
	// forced password change, expired account. (usermod -p sets the last
	// change day, so chage comes after it.)
	acctSh(t, h, `usermod -p '!' -s /bin/nosuchshell bg && chage -d 0 -E 2000-01-01 bg &&
printf 'UsePAM no\n' >/etc/ssh/sshd_config.d/10-nopam.conf && kill -HUP "$(cat /run/sshd.pid)"`)
	waitSSHD(t, h)
	if _, err := acctLogin(l, h, "bg", key); err == nil {
		t.Fatal("bg still logs in after the damage")
	}
	env.Facts = &Facts{}
	res := acctRun(t, NewUser, `{name: bg}`, r, env)
	if len(res.Changes) != 4 {
		t.Errorf("repairs: %+v", res.Changes)
	}
	acctMustLogin(t, l, h, "bg", key)
	env.Facts = &Facts{}
	if res := acctRun(t, NewUser, `{name: bg}`, r, env); res.Changed {
		t.Errorf("second run: %+v", res.Changes)
	}
}

// waitSSHD waits until sshd answers with its banner again after a reload
// (sshd re-executes itself on SIGHUP and listens anew).
func waitSSHD(t *testing.T, h *lab.Host) {
	t.Helper()
	addr := net.JoinHostPort(h.Addr, fmt.Sprint(h.Port))
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			_ = c.SetDeadline(time.Now().Add(2 * time.Second))
			b := make([]byte, 4)
			_, err = io.ReadFull(c, b)
			c.Close()
			if err == nil && string(b) == "SSH-" {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("sshd on %s does not answer after a reload: %v", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestUserAbsentProvesOthers: removing a user is kept only when fresh
// logins prove the control user and min_working of the other break-glass
// users still get in.
func TestUserAbsentProvesOthers(t *testing.T) {
	ok := func(u string) string { return "breakglass-probe user=" + u + " sudo=ok\n" }
	logins := []Login{{User: "bg-ops1", KeyFile: "k1"}, {User: "bg-ops2", KeyFile: "k2"}}
	u := mustUser(t, `{name: bg-ops1, state: absent}`)
	for _, tc := range []struct {
		name    string
		min     int
		fail    map[string]error
		wantErr string
	}{
		{"the other user suffices", 1, nil, ""},
		{"min_working counts the removed user", 2, nil, "1 of 1 break-glass users can log in, fewer than min_working 2"},
		{"the other user is locked out", 1, map[string]error{"bg-ops2/direct": errors.New("ssh: unable to authenticate")}, "0 of 1"},
		{"the control user is locked out", 1, map[string]error{"admin/direct": errors.New("ssh: unable to authenticate")}, "the control user admin cannot log in"},
		{"no min_working: nothing to prove", 0, map[string]error{"admin/direct": errors.New("down")}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := &fakeLogins{answers: map[string]string{"admin/direct": ok("admin"), "bg-ops1/direct": ok("bg-ops1"), "bg-ops2/direct": ok("bg-ops2")}, fail: tc.fail}
			env := &Env{ControlUser: "admin", Dial: d, Logins: logins, MinWorking: tc.min}
			err := u.removalGuard(env).Prove(context.Background(), env)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("got %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
	env := &Env{ControlUser: "admin", Logins: logins, MinWorking: 1}
	if err := u.removalGuard(env).Prove(context.Background(), env); err == nil {
		t.Error("removal allowed with no way to open fresh logins")
	}
}

// TestUserAbsentNotBatched: a removal's guard needs every earlier change
// made before it proves the ways left, so it never joins a batch.
func TestUserAbsentNotBatched(t *testing.T) {
	env := &Env{ControlUser: "admin"}
	for src, want := range map[string]bool{`{name: alice, state: absent}`: false, `{name: alice}`: true} {
		u := mustUser(t, src)
		var vals []any
		for _, q := range u.PlanQueries(Conn{}) {
			switch {
			case q.Key == UserFactsKey("alice"):
				vals = append(vals, recordedFacts(t, "existing", "alice"))
			case strings.HasPrefix(q.Key, PathFactsKey("")):
				vals = append(vals, PathStat{Path: strings.TrimPrefix(q.Key, PathFactsKey("")), Exists: true, Mode: 0o100755})
			default:
				vals = append(vals, true)
			}
		}
		p, err := u.Plan(env, vals)
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		if p.MayBatch() != want {
			t.Errorf("%s: batchable %v, want %v", src, p.MayBatch(), want)
		}
	}
}

// TestHomeParentInSharedDirOnLab: an account's missing home lies below a
// directory every user can write (/srv/drop, mode 1777). Root must not make
// the missing directories there: between the facts and the mkdir another
// user can put a link to /etc in their place, and a plain mkdir -p of the
// parent (what this code did before) follows it. The run fails instead,
// and a home whose parents root alone controls is still made.
func TestHomeParentInSharedDirOnLab(t *testing.T) {
	_, h, env := acctLab(t)
	r := h.Runner()
	acctSh(t, h, `mkdir -m 1777 /srv/drop
useradd -M -d /srv/drop/x/wendy -s /bin/sh wendy
useradd -M -d /srv/homes/deep/vera -s /bin/sh vera`)
	m, err := decodeTask(t, NewUser, `{name: wendy}`)
	if err != nil {
		t.Fatal(err)
	}
	env.Facts = &Facts{}
	if _, err := runModule(context.Background(), r, env, m); err == nil {
		t.Error("root made wendy's home's parent in a directory every user can write")
	} else {
		t.Logf("refused as it should: %v", err)
	}
	if out, err := h.Exec(context.Background(), "ls -ld /srv/drop/x", nil); err == nil {
		t.Errorf("root made a directory in /srv/drop: %s", out)
	}
	env.Facts = &Facts{}
	acctRun(t, NewUser, `{name: vera}`, r, env)
	if got := acctSh(t, h, "stat -c '%U %a' /srv/homes /srv/homes/deep /srv/homes/deep/vera"); got != "root 755\nroot 755\nvera 700\n" {
		t.Errorf("vera's home and its parents:\n%s", got)
	}
}
