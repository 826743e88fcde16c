package audit

import (
	"context"
	_ "embed"
	"fmt"
	"strings"

	"github.com/breakglass/breakglass/internal/engine"
	"github.com/breakglass/breakglass/internal/shell"
)

// A forced command (ForceCommand, or a key line's command=) replaces what
// the user asks for: sshd runs it with the user's shell (-c). When the
// program it names does not exist, or the user cannot execute it, the
// shell fails (127, 126) and the login does nothing but fail. Whether it
// can run is asked of the host as the user (setpriv, no PAM): the user's
// own rights decide, and a link the user planted leads nowhere root goes.

// sessionPath is the PATH sshd gives a session (Debian's build:
// _PATH_STDPATH), where a forced command without a slash is looked up.
const sessionPath = "/usr/local/bin:/usr/bin:/bin:/usr/games"

// commandProgram returns the program a forced command runs ("" when it is
// one the shell or sshd runs itself, or when the command is more than
// this audit judges: quoting, expansions, control operators before the
// first word ends).
func commandProgram(cmd string) string {
	f := strings.Fields(cmd)
	for len(f) > 0 && (strings.Contains(f[0], "=") && !strings.HasPrefix(f[0], "/") || f[0] == "exec") {
		f = f[1:] // VAR=value and exec before the program
	}
	if len(f) == 0 {
		return ""
	}
	p := strings.TrimRight(f[0], ";")
	if p == "" || strings.Trim(p, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._/+-") != "" {
		return ""
	}
	if p == "internal-sftp" || shellBuiltins[p] {
		return ""
	}
	return p
}

// shellBuiltins are the POSIX shell's special and regular builtins and
// reserved words: a forced command naming one needs no program.
var shellBuiltins = map[string]bool{}

func init() {
	for _, w := range strings.Fields(`: . [ alias bg break cd command continue echo eval exec exit export false fc fg
		getopts hash jobs kill printf pwd read readonly return set shift test times trap true type ulimit umask
		unalias unset wait if then else elif fi for while until do done case esac in { } !`) {
		shellBuiltins[w] = true
	}
}

// commandCheck is the host's answer about one program for one user.
type commandCheck struct {
	User, Program string
	State         string // "ok", "missing" (not there, or not reachable by the user), "noexec", "notfound" (no such name in PATH)
}

func (k commandCheck) key() string { return k.User + "\x00" + k.Program }

// forcedCommands lists the programs the audited users' forced commands
// name, and returns the host's answer for each, in one round trip made
// only when there is one to ask about.
func forcedCommands(ctx context.Context, r engine.Runner, users []auditedUser) (map[string]commandCheck, error) {
	var todo []commandCheck
	seen := map[string]bool{}
	want := func(user, cmd string) {
		p := commandProgram(cmd)
		k := commandCheck{User: user, Program: p}
		if p == "" || seen[k.key()] || shell.ValidUser(user) != nil {
			return
		}
		seen[k.key()] = true
		todo = append(todo, k)
	}
	for _, u := range users {
		uf := u.uf
		if !uf.Exists || uf.SSHDKnown() != nil {
			continue
		}
		if fc := uf.SSHD.Get("forcecommand"); fc != "" && fc != "none" {
			want(uf.Name, fc)
		}
		for _, kf := range uf.KeyFiles {
			_, _, opts, _ := keyFileLines(kf.Content)
			for _, o := range opts {
				for _, opt := range o {
					if name, val, ok := strings.Cut(opt, "="); ok && strings.EqualFold(name, "command") {
						want(uf.Name, unquoteOption(val))
					}
				}
			}
		}
	}
	if len(todo) == 0 {
		return nil, nil
	}
	var checks []string
	for _, k := range todo {
		checks = append(checks, k.User+" "+k.Program)
	}
	script := fmt.Sprintf("bg_path=%s\nbg_checks=%s\n", shell.Quote(sessionPath), shell.Quote(strings.Join(checks, "\n"))) + commandsScript
	out, err := r.Run(ctx, "/bin/sh -s", []byte(script))
	if err != nil {
		return nil, fmt.Errorf("check forced commands: %w", err)
	}
	res := map[string]commandCheck{}
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.SplitN(l, " ", 4)
		if len(f) != 4 || f[0] != "fc" {
			continue
		}
		k := commandCheck{User: f[1], State: f[2], Program: f[3]}
		if seen[k.key()] {
			res[k.key()] = k
		}
	}
	return res, nil
}

// commandsScript is commands.sh: it asks the host about each "USER
// PROGRAM" line of bg_checks (user names are checked, and commandProgram
// keeps only programs of [A-Za-z0-9._/+-], so both are words).
//
//go:embed commands.sh
var commandsScript string

// unquoteOption removes the double quotes of an authorized_keys option
// value and their backslash escapes.
func unquoteOption(v string) string {
	if len(v) < 2 || v[0] != '"' || v[len(v)-1] != '"' {
		return v
	}
	return strings.ReplaceAll(v[1:len(v)-1], `\"`, `"`)
}

// commandFails says why the forced command cmd cannot run for user, from
// the host's answer ("" when it can, or when that is not known).
func (c *checker) commandFails(user, cmd string) string {
	p := commandProgram(cmd)
	if p == "" {
		return ""
	}
	k, ok := c.commands[commandCheck{User: user, Program: p}.key()]
	if !ok {
		return ""
	}
	switch k.State {
	case "missing":
		return fmt.Sprintf("runs %s, which does not exist (or %s cannot reach it): the shell exits 127", p, user)
	case "noexec":
		return fmt.Sprintf("runs %s, which %s cannot execute (not a regular file with an execute bit %s may use): the shell exits 126", p, user, user)
	case "notfound":
		return fmt.Sprintf("runs %s, which is not in the session's PATH (%s): the shell exits 127", p, sessionPath)
	}
	return ""
}
