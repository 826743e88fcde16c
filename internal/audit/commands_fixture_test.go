package audit

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
)

// sessionUsers are the audited users of the "session" recording, by name.
func sessionUsers(t *testing.T) []auditedUser {
	t.Helper()
	h := hostOf(t, "session")
	var names []string
	for n := range h.Users {
		names = append(names, n)
	}
	sort.Strings(names)
	var us []auditedUser
	for _, n := range names {
		us = append(us, auditedUser{uf: h.Users[n], x: h.Extras[n]})
	}
	return us
}

// TestForcedCommandsRecorded: the second round trip's answer recorded on
// the "session" lab host (testdata/lab/session.fc.txt, see its README)
// parses to one check per user and program asked, field by field.
func TestForcedCommandsRecorded(t *testing.T) {
	fc, err := os.ReadFile(filepath.Join("testdata", "lab", "session.fc.txt"))
	if err != nil {
		t.Fatal(err)
	}
	var asked []string
	got, err := forcedCommands(context.Background(), runnerFunc(func(cmd string, stdin []byte) ([]byte, error) {
		_, checks, _ := strings.Cut(string(stdin), "\nbg_checks='")
		checks, _, ok := strings.Cut(checks, "'\n")
		if !ok {
			return nil, errors.New("no bg_checks in the script")
		}
		asked = strings.Split(checks, "\n")
		return fc, nil
	}), sessionUsers(t))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]commandCheck{}
	for _, k := range []commandCheck{
		{User: "bob", Program: "/bin/false", State: "ok"},
		{User: "carol", Program: "/bin/false", State: "ok"},
		{User: "frank", Program: "/usr/local/bin/no-such-tool", State: "missing"},
		{User: "gina", Program: "/etc/hostname", State: "noexec"},
		{User: "hank", Program: "/opt/bg/missing", State: "missing"},
		{User: "ivan", Program: "/usr/bin/id", State: "ok"},
		{User: "judy", Program: "/root/bgtool", State: "missing"},
	} {
		want[k.key()] = k
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
	// What was asked is what the recording answers, one line each.
	if len(asked) != len(want) {
		t.Errorf("asked %q", asked)
	}
	for _, a := range asked {
		if !bytes.Contains(fc, []byte(" "+strings.Fields(a)[1]+"\n")) {
			t.Errorf("asked %q, not in the recording", a)
		}
	}
}

// TestForcedCommandsEdgeCases: answers that are empty, cut off, about a
// program nobody asked for, or with stray lines give no check for what
// they do not answer properly.
func TestForcedCommandsEdgeCases(t *testing.T) {
	users := sessionUsers(t)
	for _, tc := range []struct {
		name, out string
		want      []commandCheck
	}{
		{"empty", "", nil},
		{"cut off", "fc bob ok /bin/false\nfc carol o", []commandCheck{{User: "bob", Program: "/bin/false", State: "ok"}}},
		{"not asked", "fc bob ok /bin/true\nfc mallory ok /bin/false\n", nil},
		{"stray lines", "Welcome\nfc\nfc bob\nlog bob 1 x\nfc bob unknown /bin/false\n", []commandCheck{{User: "bob", Program: "/bin/false", State: "unknown"}}},
		{"program with a space", "fc frank missing /usr/local/bin/no-such-tool extra\n", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := forcedCommands(context.Background(), runnerFunc(func(string, []byte) ([]byte, error) { return []byte(tc.out), nil }), users)
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]commandCheck{}
			for _, k := range tc.want {
				want[k.key()] = k
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got %+v, want %+v", got, want)
			}
		})
	}
}
