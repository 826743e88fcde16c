package tasks

import (
	"regexp"
	"strings"
	"testing"
)

var sudoersLeftoverName = regexp.MustCompile(`^/etc/sudoers\.d/\.ops\.breakglass-(new|old)\.[0-9a-f]{12}$`)

// TestSudoersLeftoversPlan: what killed runs left beside the drop-in is a
// change of its own, also when the drop-in is as wanted; the transaction
// then runs only its clearing (mode none), without the control user's
// sudo check.
func TestSudoersLeftoversPlan(t *testing.T) {
	s := mustSudoers(t, "{name: ops, users: [admin]}")
	fact := "leftover .ops.breakglass-old.0123456789ab\npresent 0 0 440 regular file\n" + s.content
	v, err := parseSudoersFile([]byte(fact))
	if err != nil {
		t.Fatal(err)
	}
	cur := v.(sudoersFile)
	if len(cur.Leftovers) != 1 || cur.Content != s.content || !cur.Exists {
		t.Fatalf("parsed %+v", cur)
	}
	p, err := s.planChanges(cur, false)
	if err != nil || p.install || p.remove || len(p.changes) != 1 || !strings.Contains(p.changes[0].What, "left by a killed run") {
		t.Fatalf("plan %+v %v", p, err)
	}
	script, err := s.script(p, "admin")
	if err != nil {
		t.Fatal(err)
	}
	if got := scriptVar(string(script), "mode="); got != "none" {
		t.Errorf("mode %q, want none", got)
	}
	if got := scriptVar(string(script), "cu="); got != "''" {
		t.Errorf("cu %q: clearing leftovers cannot change anyone's sudo", got)
	}
	// The names a run gives its files are the shape the next run clears.
	for _, v := range []string{"new=", "old="} {
		if got := scriptVar(string(script), v); !sudoersLeftoverName.MatchString(got) {
			t.Errorf("%s%s is not of the shape the query and sudoers.sh clear", v, got)
		}
	}
	cur.Leftovers = nil
	if p, err := s.planChanges(cur, false); err != nil || len(p.changes) != 0 {
		t.Errorf("without leftovers: %+v %v", p, err)
	}
}

// TestSudoersLeftoversOnHost plants what runs killed mid-transaction leave
// in /etc/sudoers.d (the new file's link, the previous file's, of two
// runs; a link planted under such a name) beside names that only look
// alike, and runs the module: the leftovers are gone, the newest previous
// version is the backup and is not put back in force, no link was
// followed, and everything else is as it was.
func TestSudoersLeftoversOnHost(t *testing.T) {
	h, r := scLabHost(t)
	env := Env{Host: h.Name, ControlUser: "admin"}
	const rule = "{name: breakglass, users: [bg-ops1], nopasswd: true}"
	scSh(t, h, "useradd -m -s /bin/bash bg-ops1 && useradd -m -s /bin/bash bg-ops2")
	if _, err := runSudoers(t, r, env, rule); err != nil {
		t.Fatal(err)
	}
	installed := scSh(t, h, "cat /etc/sudoers.d/breakglass")

	// Two killed installs: the older left only its previous file, the
	// newer was killed after the rename (its new link is the drop-in).
	// Then names that are not leftovers of this drop-in.
	const d = "/etc/sudoers.d/"
	scSh(t, h, `set -e
cd /etc/sudoers.d
printf 'bg-ops2 ALL=(ALL) ALL\n' >.breakglass.breakglass-old.00000000000a && chmod 0440 .breakglass.breakglass-old.00000000000a
sleep 1.1
printf 'bg-ops2 ALL=(ALL) NOPASSWD: ALL\n' >.breakglass.breakglass-old.0123456789ab && chmod 0440 .breakglass.breakglass-old.0123456789ab
ln breakglass .breakglass.breakglass-new.0123456789ab
echo 'root secret' >/root/target && chmod 0600 /root/target
ln -s /root/target .breakglass.breakglass-new.fedcba987654
for n in .breakglass.breakglass-new.0123 .breakglass.breakglass-old.0123456789aB .breakglass.breakglass-old.0123456789abc \
	.other.breakglass-new.0123456789ab .xbreakglass.breakglass-old.0123456789ab breakglass.breakglass-old.0123456789ab; do
	: >"$n"
done
mkdir -m 0700 .breakglass.breakglass-new.aaaaaaaaaaaa
: >.breakglass.breakglass-new.aaaaaaaaaaaa/keep`)
	const stay = "stat -c '%n %F %i' .breakglass.breakglass-new.0123 .breakglass.breakglass-old.0123456789aB .breakglass.breakglass-old.0123456789abc " +
		".other.breakglass-new.0123456789ab .xbreakglass.breakglass-old.0123456789ab breakglass.breakglass-old.0123456789ab " +
		".breakglass.breakglass-new.aaaaaaaaaaaa .breakglass.breakglass-new.aaaaaaaaaaaa/keep breakglass /root/target; cat /root/target"
	before := scSh(t, h, "cd /etc/sudoers.d && "+stay)

	// The drop-in is as wanted: the run only clears.
	res, err := runSudoers(t, r, env, rule)
	if err != nil || !res.Changed {
		t.Fatalf("clearing: res %+v err %v", res, err)
	}
	var what []string
	for _, c := range res.Changes {
		what = append(what, c.What)
	}
	if len(what) != 4 || !strings.Contains(strings.Join(what, "\n"), d+".breakglass.breakglass-new.fedcba987654, left by a killed run") {
		t.Errorf("changes:\n%s", strings.Join(what, "\n"))
	}
	if got := scSh(t, h, `cd /etc/sudoers.d && for n in .breakglass.breakglass-new.0123456789ab .breakglass.breakglass-new.fedcba987654 \
	.breakglass.breakglass-old.00000000000a .breakglass.breakglass-old.0123456789ab; do
	if [ -e "$n" ] || [ -L "$n" ]; then echo "$n"; fi
done`); got != "" {
		t.Errorf("leftovers after the run:\n%s", got)
	}
	if after := scSh(t, h, "cd /etc/sudoers.d && "+stay); after != before {
		t.Errorf("what is not a leftover changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if got := scSh(t, h, "cat /etc/sudoers.d/.breakglass.breakglass.bak; stat -c '%U:%G %a' /etc/sudoers.d/.breakglass.breakglass.bak"); got != "bg-ops2 ALL=(ALL) NOPASSWD: ALL\nroot:root 440\n" {
		t.Errorf("backup: %q, want the newest previous version", got)
	}
	if got := scSh(t, h, "cat /etc/sudoers.d/breakglass"); got != installed {
		t.Errorf("drop-in changed: %q", got)
	}
	if !scCanSudo(t, h, "bg-ops1") || scCanSudo(t, h, "bg-ops2") || !scCanSudo(t, h, "admin") {
		t.Error("sudo changed by clearing leftovers")
	}
	if res, err := runSudoers(t, r, env, rule); err != nil || res.Changed {
		t.Errorf("after clearing: res %+v err %v", res, err)
	}

	// A removal killed after the rm: the drop-in is gone and only its
	// old name holds the rules. They are kept as the backup, not put
	// back: the operator asked for the removal.
	scSh(t, h, "cd /etc/sudoers.d && ln breakglass .breakglass.breakglass-old.bbbbbbbbbbbb && rm breakglass")
	res, err = runSudoers(t, r, env, "{name: breakglass, state: absent}")
	if err != nil || !res.Changed {
		t.Fatalf("absent: res %+v err %v", res, err)
	}
	if got := scSh(t, h, `cd /etc/sudoers.d && for n in .breakglass.breakglass-old.bbbbbbbbbbbb breakglass; do
	if [ -e "$n" ] || [ -L "$n" ]; then echo "$n"; fi
done`); got != "" {
		t.Errorf("after the killed removal's next run, still there: %q", got)
	}
	if got := scSh(t, h, "cat /etc/sudoers.d/.breakglass.breakglass.bak"); got != installed {
		t.Errorf("backup %q, want the removed rules", got)
	}
	if scCanSudo(t, h, "bg-ops1") || !scCanSudo(t, h, "admin") {
		t.Error("sudo after clearing a killed removal")
	}
}
