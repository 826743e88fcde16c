package transport

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/breakglass/breakglass/internal/shell"
)

// recorder is a fake client: it records what it is asked to run and
// answers with a canned result.
type recorder struct {
	user  string
	cmd   string
	stdin []byte
	out   []byte
	err   error
	runs  int
}

func (r *recorder) User() string { return r.user }

func (r *recorder) Run(ctx context.Context, cmd string, stdin []byte) ([]byte, error) {
	r.runs++
	r.cmd, r.stdin = cmd, append([]byte(nil), stdin...)
	return r.out, r.err
}

func TestBecomeCommands(t *testing.T) {
	ctx := context.Background()
	const cmd = `echo 'it''s' "$HOME"`
	data := []byte("data\n")

	root := &recorder{user: "root", out: []byte("x")}
	out, err := (&Become{Client: root, Password: "ignored"}).Run(ctx, cmd, data)
	if err != nil || string(out) != "x" || root.cmd != cmd || string(root.stdin) != string(data) {
		t.Errorf("root: ran %q with %q (%v), want the command as is", root.cmd, root.stdin, err)
	}

	np := &recorder{user: "admin"}
	(&Become{Client: np}).Run(ctx, cmd, data)
	if want := "env LC_ALL=C sudo -n -- /bin/sh -c " + shell.Quote("unset LC_ALL\n"+cmd); np.cmd != want {
		t.Errorf("no password: ran %q, want %q", np.cmd, want)
	}
	if string(np.stdin) != string(data) {
		t.Errorf("no password: stdin %q", np.stdin)
	}

	const pw = "s3cr'et pw"
	wp := &recorder{user: "admin"}
	(&Become{Client: wp, Password: pw}).Run(ctx, cmd, data)
	if strings.Contains(wp.cmd, "s3cr") {
		t.Errorf("the password is on the command line: %q", wp.cmd)
	}
	if want := pw + "\n" + string(data); string(wp.stdin) != want {
		t.Errorf("password: stdin %q, want %q", wp.stdin, want)
	}
	if !strings.HasSuffix(wp.cmd, " "+shell.Quote("unset LC_ALL\n"+cmd)) {
		t.Errorf("password: the command is not the wrapper's $0: %q", wp.cmd)
	}

	bad := &recorder{user: "admin"}
	_, err = (&Become{Client: bad, Password: "line\nzebra42"}).Run(ctx, cmd, nil)
	if err == nil || bad.runs != 0 || strings.Contains(err.Error(), "zebra42") {
		t.Errorf("a password with a newline: err %v after %d runs; want an error without the password, nothing run", err, bad.runs)
	}
}

func TestBecomeErrors(t *testing.T) {
	tests := []struct {
		name     string
		password string
		stderr   string
		code     int
		is       error
		contains string
	}{
		{"sudo -n wants a password", "", "sudo: a password is required\n", 1, ErrBecomeNeedsPassword, "become root as admin"},
		{"wrong password", "pw", becomeMarker + "Sorry, try again.\n\nsudo: no password was provided\nsudo: 1 incorrect password attempt\n", 1, ErrBecomeBadPassword, "1 incorrect password attempt"},
		{"not in sudoers", "pw", becomeMarker + "Sorry, user admin may not run sudo on h.\n", 1, nil, "sudo refused: Sorry, user admin may not run sudo on h."},
		{"the command's own failure", "", "grep: x: No such file\n", 2, nil, "exit status 2: grep: x: No such file"},
		{"exit 1 of a command that prints the same words", "", "note: sudo: a password is required somewhere\n", 1, nil, "exit status 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &recorder{user: "admin", err: &ExitError{Code: tt.code, Stderr: tt.stderr}}
			_, err := (&Become{Client: r, Password: tt.password}).Run(context.Background(), "true", nil)
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("want %v, got %v", tt.is, err)
			}
			if tt.is == nil && (errors.Is(err, ErrBecomeNeedsPassword) || errors.Is(err, ErrBecomeBadPassword)) {
				t.Errorf("misclassified: %v", err)
			}
			if !strings.Contains(err.Error(), tt.contains) {
				t.Errorf("error %q lacks %q", err, tt.contains)
			}
		})
	}
	// Errors that are not a remote exit pass through.
	r := &recorder{user: "admin", err: ErrConnectionLost}
	if _, err := (&Become{Client: r}).Run(context.Background(), "true", nil); !errors.Is(err, ErrConnectionLost) {
		t.Errorf("got %v", err)
	}
}

func TestErrorMessages(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{&ExitError{Code: 1}, "exit status 1"},
		{&ExitError{Code: 2, Stderr: "\n  first  \n\nsecond\nthird\nfourth\n"}, "exit status 2: first; second; third"},
		{&ExitError{Code: 143, Signal: "TERM", Stderr: "bye"}, "killed by signal TERM: bye"},
		{&ExitError{Code: 1, Stderr: strings.Repeat("é", 300)}, "exit status 1: " + strings.Repeat("é", 200) + "…"},
		{&DialError{Target: "web1", Stage: StageAuth, Err: errors.New("no key accepted")}, "web1: login: no key accepted"},
		{&DialError{Target: "web1", Hop: "bastion", Stage: StageConnect, Err: errors.New("refused")}, "web1 (via jump host bastion): connect: refused"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
	for err, want := range map[error]bool{
		&DialError{Stage: StageHostKey, Err: ErrHostKeyUnknown}: true,
		ErrConnectionLost:                   true,
		&ExitError{Code: 1}:                 false,
		context.Canceled:                    false,
		errors.Join(ErrConnectionLost, nil): true,
	} {
		if got := IsUnreachable(err); got != want {
			t.Errorf("IsUnreachable(%v) = %v, want %v", err, got, want)
		}
	}
}

// fakeSudo stands in for sudo when TestBecomeWrapperRuns runs become.sh on
// this machine's /bin/sh: it logs its arguments, takes the password like
// sudo -k -S (one line of stdin, one attempt) and runs the command.
const fakeSudo = `#!/bin/sh
printf '%s\n' "$*" >>"$BG_FAKE_LOG"
case $1 in
-n)
	if [ -z "$BG_FAKE_NOPASSWD" ]; then echo "sudo: a password is required" >&2; exit 1; fi
	[ "$2" = true ] && exit 0
	shift 2; exec "$@" ;;
-k)
	IFS= read -r got || exit 1
	if [ "$got" != "$BG_FAKE_PW" ]; then printf 'Sorry, try again.\nsudo: 1 incorrect password attempt\n' >&2; exit 1; fi
	[ "$5" = -v ] && exit 0
	shift 5; exec "$@" ;;
esac
exit 99
`

// TestBecomeWrapperRuns runs the command Become sends for a password login
// with this machine's /bin/sh and a fake sudo: the command gets its input
// intact, a wrong password stops before the command with the marker line,
// a NOPASSWD sudo drops the password line, and the password is never an
// argument of any process the wrapper starts.
func TestBecomeWrapperRuns(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "sudo"), []byte(fakeSudo), 0o755); err != nil {
		t.Fatal(err)
	}
	const pw = " s3cr'et \\ \"pw\" $x "
	data := "line one\n\nlast line without newline"
	tests := []struct {
		name, password, nopasswd string
		wantOut, wantErr         string
	}{
		{name: "right password", password: pw, wantOut: "root:" + data},
		{name: "wrong password", password: "nope", wantErr: becomeMarker + "Sorry, try again.\nsudo: 1 incorrect password attempt\n"},
		{name: "NOPASSWD drops the line", password: "whatever", nopasswd: "1", wantOut: "root:" + data},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			log := filepath.Join(t.TempDir(), "log")
			rec := &recorder{user: "admin"}
			(&Become{Client: rec, Password: tt.password}).Run(context.Background(), `printf root:; cat`, []byte(data))
			cmd := exec.Command("/bin/sh", "-c", rec.cmd)
			cmd.Env = append(os.Environ(), "PATH="+dir+":/usr/bin:/bin", "BG_FAKE_LOG="+log, "BG_FAKE_PW="+pw, "BG_FAKE_NOPASSWD="+tt.nopasswd)
			cmd.Stdin = bytes.NewReader(rec.stdin)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			if stdout.String() != tt.wantOut || stderr.String() != tt.wantErr || (err != nil) != (tt.wantErr != "") {
				t.Errorf("got stdout %q, stderr %q, err %v; want %q, %q", stdout.String(), stderr.String(), err, tt.wantOut, tt.wantErr)
			}
			args, _ := os.ReadFile(log)
			if len(args) == 0 || strings.Contains(string(args), "s3cr") || strings.Contains(string(args), tt.password) {
				t.Errorf("sudo's arguments %q: want some, without the password", args)
			}
		})
	}
}

func TestBecomeWrapperMarker(t *testing.T) {
	if !strings.Contains(becomeWrapper, "'"+becomeMarker+"%s\\n'") {
		t.Errorf("become.sh does not print becomeMarker %q", becomeMarker)
	}
}
