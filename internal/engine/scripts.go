package engine

// The shell libraries and helpers the engine's own scripts use, exported
// for the modules' scripts that change files the same way: one writer
// (nofollow.sh), one transaction prelude, one way to carry a file's
// content and one way to report.

// Nofollow is nofollow.sh, the one writer and the no-follow helpers
// (bg_write, bg_temp, bg_commit, bg_keep, bg_chown, bg_chmod, bg_mkdir):
// a script that writes files includes it.
var Nofollow = nofollowScript

// TxnPrelude is txn_prelude.sh: the settings every transaction script,
// and every other script that changes sshd's files, starts with.
var TxnPrelude = txnPrelude

// Script wraps body for `/bin/sh -s`: the shell parses the whole brace
// group before running any of it, so no command can read the rest of the
// script from stdin; commands get /dev/null instead.
func Script(body string) []byte { return txnScript(body) }

// Heredoc returns shell that writes data, byte for byte, to the file
// named by the shell word dst (base64 in a here-document: any content
// travels on stdin and nothing in it is ever shell). rest continues the
// command line; the document follows that line.
func Heredoc(data []byte, dst, rest string) string { return txnHeredoc(data, dst, rest) }

// TmpPath is the fixed temp name beside p that a transaction's install
// renames over p (.NAME.breakglass-WHAT): hidden and not ending in .conf,
// so no Include glob picks it up.
func TmpPath(p, what string) string { return txnTmpPath(p, what) }

// WriteTemp is shell that writes content with the one writer's first
// half, bg_temp (Nofollow, which the script must include): a new temp
// file beside p, owner and mode set, fsynced, its name in the shell
// variable v. On failure it calls bg_fail with what happened.
func WriteTemp(v, p, owner, mode string, content []byte) string {
	return writeTempShell(v, p, owner, mode, content)
}

// Status is what a script that reports as the transaction's do printed:
// its "status WORD" line and its "| " lines.
type Status struct {
	out txnOutput
}

// ParseStatus reads a script's report.
func ParseStatus(out []byte) Status { return Status{parseTxnOutput(out)} }

// Word is the status line's word ("" when there was none).
func (s Status) Word() string { return s.out.status }

// Notes are the "| " lines, joined by newlines.
func (s Status) Notes() string { return s.out.msg }

// Describe is the script's own account of a failure, for errors.
func (s Status) Describe() string { return s.out.describe() }

// ValidTxnPath checks that p may be one of a transaction's files: an
// absolute, clean path whose components hold only letters, digits and
// . _ + @ , : = - (so it is one shell word everywhere).
func ValidTxnPath(p string) error { return txnValidPath(p) }

// FirstLine is the first line of s, trimmed and cut at 200 bytes: what an
// error quotes of a host's unexpected answer.
func FirstLine(s string) string { return probeFirstLine(s) }

// ApplyPrelude starts every script of steps (a batch, RunAction): set -e,
// umask, locale and PATH, bg_reported_step, and Nofollow's helpers.
var ApplyPrelude = applyPrelude
