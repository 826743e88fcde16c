# shellcheck shell=sh
# The apply prelude's fixed part (ApplyPrelude, steps.go): it starts
# every apply script, before nofollow.sh's helpers. Step commands are
# simple commands, one per line, so that set -e stops at the first failure
# (it does not inside && lists). The script travels on the shell's stdin
# inside one { } group: the shell parses all of it before it runs any of
# it, so a script cut short by a lost connection is a syntax error that
# changes nothing, never half a file.
set -e
umask 022
LC_ALL=C; export LC_ALL
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin; export PATH

# bg_reported_step OKLINE runs bg_step, a step that reports on its standard
# output and exits 0 whatever happened (sudoers; stepBatch.flush defines
# bg_step just before), with set +e and stdin from /dev/null. It prints
# the step's output and sets bg_rc to 0 when OKLINE is one of its lines, 1
# otherwise.
# shellcheck disable=SC2034 # bg_rc: read by the script after the step
bg_reported_step() {
	bg_out=$(set +e; bg_step </dev/null) || :
	printf '%s' "$bg_out"
	bg_rc=1
	case "
$bg_out
" in *"
$1
"*) bg_rc=0 ;; esac
}
