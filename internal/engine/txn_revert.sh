# shellcheck shell=sh
# shellcheck disable=SC2154 # T, deadline, files: set by Txn.revertScript before this script
# revert.sh's fixed part, after its header (Txn.revertScript: the prelude;
# T, deadline and files, one "INDEX EXISTED PATH RESTORE-TEMP" line per
# file; and bg_after_restore, the step that puts the restore in effect).
# Usage: revert.sh arm|commit|cancel|rollback|abort|restore|redo PID
#   arm       (detached) sleep, then restore; a rollback or abort asking
#             for a restore (SIGUSR1) ends the sleep early
#   commit    keep the change: claim the transaction, stop the armed revert
#   cancel    the same, for a transaction that changed nothing yet
#   rollback  ask for a restore that puts the restored state in effect,
#             wait for its result and print it
#   abort     the same, files only
#   restore   (detached) restore as asked, when the armed revert is gone
#   redo PID  (detached) restore again: restorer PID died half-way
# Exactly one party claims the transaction: the first to create $T/claim,
# a symlink to WHO:PID (atomic, and never without its content). Only a
# detached process claims it to restore, and nothing stops the armed
# revert before a commit or cancel claimed it, so a session that dies at
# any instant (breakglass killed, the connection lost) never leaves a
# restore undone: the one it asked for runs on, or the armed revert fires
# at the deadline. A restore copies to a temp file and renames, so doing
# it again is harmless.
bg_log() { printf '%s %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" >>"$T/revert.log"; }
# bg_claim WHO: take the transaction for WHO; fails when it is taken.
bg_claim() { ln -sn "$1:$$" "$T/claim" 2>/dev/null; }
# bg_claim_of prints the claim, WHO:PID; fails while nobody claimed.
bg_claim_of() { readlink "$T/claim" 2>/dev/null; }
bg_claimed_by() {
	c=$(bg_claim_of) || { echo unknown; return 0; }
	echo "${c%%:*}"
}
# bg_alive PID: PID is a live revert.sh of this transaction (not a
# zombie, not a reused pid).
bg_alive() {
	case ${1-} in '' | *[!0-9]*) return 1 ;; esac
	tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -qF -- "$T/revert.sh"
}
# bg_armed prints the armed revert's pid while it runs.
bg_armed() {
	p=$(cat "$T/pid" 2>/dev/null) || return 1
	[ "$p" != "$$" ] && bg_alive "$p" || return 1
	echo "$p"
}
# bg_restorer PID prints who restores now: PID, or whoever redid its
# restore after it died (redo.PID links to the next one).
bg_restorer() {
	cur=$1
	while nxt=$(readlink "$T/redo.$cur" 2>/dev/null); do cur=$nxt; done
	echo "$cur"
}
# bg_spawn ARGS: run revert.sh ARGS detached from this session: a
# transient systemd unit where systemd runs (logind may kill what stays in
# the session's scope), otherwise its own session, stdio on /dev/null.
bg_spawn() {
	if [ -d /run/systemd/system ] && command -v systemd-run >/dev/null 2>&1 &&
		systemd-run --quiet --collect --unit="breakglass-$1-${T##*/}-$$" --description="breakglass $1 ${T##*/}" /bin/sh "$T/revert.sh" "$@" >/dev/null 2>&1; then
		return 0
	fi
	setsid nohup /bin/sh "$T/revert.sh" "$@" </dev/null >>"$T/revert.log" 2>&1 &
}
# bg_wake, the armed revert's USR1 trap: end its sleep (a rollback asks
# for a restore now).
# shellcheck disable=SC2317
bg_wake() { if [ -n "$sp" ]; then kill "$sp" 2>/dev/null; fi; }
# bg_stop_sleeper ends the armed revert (its own process group): only
# after a commit or cancel claimed the transaction.
bg_stop_sleeper() {
	pid=$(bg_armed) || return 0
	kill -TERM "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null
	i=0
	while bg_alive "$pid" && [ "$i" -lt 40 ]; do i=$((i + 1)); sleep 0.05; done
}
# bg_restore_files puts every file back as it was at the begin: the copy
# in $T/files (through a temp file and a rename) where it existed, else no
# file at all.
bg_restore_files() {
	rc=0
	while read -r n had f tmp; do
		[ -n "$f" ] || continue
		if [ "$had" = 1 ]; then
			{ rm -f -- "$tmp.$$" && cp -a -- "$T/files/$n" "$tmp.$$" && { sync -- "$tmp.$$" 2>/dev/null || :; } && mv -f -- "$tmp.$$" "$f"; } || { echo "| restore $f failed"; rc=1; }
		elif [ -e "$f" ] || [ -L "$f" ]; then
			rm -f -- "$f" || { echo "| remove $f failed"; rc=1; }
		fi
	done <<BREAKGLASS_FILES
$files
BREAKGLASS_FILES
	sync
	return $rc
}
# bg_clean_tmp PID removes what restorer PID left half-copied.
bg_clean_tmp() {
	while read -r n had f tmp; do
		if [ "$had" = 1 ]; then rm -f -- "$tmp.$1"; fi
	done <<BREAKGLASS_FILES
$files
BREAKGLASS_FILES
}
# bg_restore WHO: restore, put in effect unless WHO is abort, record the
# outcome in $T/result.
bg_restore() {
	{
		if out=$(bg_restore_files 2>&1); then
			echo "restored ok"
			if [ "$1" != abort ]; then
				if aout=$(bg_after_restore 2>&1); then echo "after ok"; else echo "after failed"; fi
				printf '%s\n' "$aout" | sed '/^$/d; s/^| //; s/^/| /'
			fi
		else
			echo "restored failed"
		fi
		printf '%s\n' "$out" | sed '/^$/d; s/^| //; s/^/| /'
	} >"$T/result.tmp.$$" 2>&1
	mv -f "$T/result.tmp.$$" "$T/result"
	: >"$T/done"
}
# bg_fire, in a detached process: claim for the restore asked (or as
# fired when nobody asked: the deadline passed), restore.
bg_fire() {
	req=$(cat "$T/request" 2>/dev/null) || req=
	case $req in rollback | abort) who=$req ;; *) who=fired ;; esac
	if bg_claim "$who"; then
		if [ "$who" = fired ]; then bg_log "deadline passed: restoring"; else bg_log "$who asked: restoring"; fi
		bg_restore "$who"
		bg_log "restore done"
	else
		bg_log "$1: already $(bg_claimed_by)"
	fi
}
# bg_wait: until the restore is recorded in $T/result (or a commit or
# cancel claimed the transaction), make sure that someone does it: the
# armed revert; a detached restorer when it is gone before claiming; a
# detached redo when the restorer died half-way. Fails after 40 s.
bg_wait() {
	spawned='' redone='' i=0
	while [ ! -f "$T/result" ]; do
		if c=$(bg_claim_of); then
			case ${c%%:*} in commit | cancel) return 0 ;; esac
			r=$(bg_restorer "${c#*:}")
			if [ "$r" != "$redone" ] && ! bg_alive "$r" && [ ! -f "$T/result" ]; then
				redone=$r
				bg_log "the restore by pid $r stopped half-way: starting it again"
				bg_spawn redo "$r"
			fi
		elif [ -z "$spawned" ] && ! bg_armed >/dev/null; then
			spawned=1
			bg_log "the armed revert is gone: starting a restore"
			bg_spawn restore
		fi
		i=$((i + 1))
		[ "$i" -le 800 ] || return 1
		sleep 0.05
	done
	# The result is in; let its restorer end too (it only logs after it),
	# so that nothing of the transaction runs once this returns.
	c=$(bg_claim_of) || return 0
	r=$(bg_restorer "${c#*:}") i=0
	while bg_alive "$r" && [ "$i" -lt 40 ]; do i=$((i + 1)); sleep 0.05; done
}
# bg_report prints who claimed the transaction and the restore's result.
bg_report() {
	if c=$(bg_claim_of); then echo "claim ${c%%:*}"; fi
	if [ -f "$T/result" ]; then
		cat "$T/result"
	else
		case $(bg_claimed_by) in
		commit | cancel) ;;
		*)
			echo "status pending"
			echo "| the restore has not finished after 40 s: see $T/revert.log"
			;;
		esac
	fi
}
mode=${1-}
case $mode in
arm)
	trap '' HUP INT
	exec </dev/null >>"$T/revert.log" 2>&1
	sp=''
	trap bg_wake USR1
	sleep "$deadline" &
	sp=$!
	echo "$$" >"$T/pid.tmp" && mv -f "$T/pid.tmp" "$T/pid"
	bg_log "armed (pid $$): restoring in $deadline s unless committed"
	if [ -f "$T/request" ]; then kill "$sp" 2>/dev/null; else wait "$sp"; fi
	trap '' USR1
	sp=''
	bg_fire "woken"
	;;
restore)
	trap '' HUP INT
	exec </dev/null >>"$T/revert.log" 2>&1
	bg_fire "restore"
	;;
redo)
	trap '' HUP INT
	exec </dev/null >>"$T/revert.log" 2>&1
	dead=${2-}
	case $dead in '' | *[!0-9]*) exit 2 ;; esac
	ln -sn "$$" "$T/redo.$dead" 2>/dev/null || exit 0
	[ -f "$T/result" ] && exit 0
	bg_clean_tmp "$dead"
	bg_log "restoring again (pid $$): pid $dead stopped half-way"
	bg_restore "$(bg_claimed_by)"
	bg_log "restore done"
	;;
commit | cancel)
	if bg_claim "$mode"; then
		bg_stop_sleeper
		: >"$T/done"
		bg_log "$mode"
		echo "claim $mode"
	else
		bg_wait || :
		bg_report
	fi
	;;
rollback | abort)
	# Never claim here, never stop the armed revert: ask it to restore now.
	if ! bg_claim_of >/dev/null; then
		if [ ! -f "$T/request" ]; then
			echo "$mode" >"$T/request.tmp" && mv -f "$T/request.tmp" "$T/request"
		fi
		if pid=$(bg_armed); then
			bg_log "$mode asked: waking the armed revert (pid $pid)"
			kill -USR1 "$pid" 2>/dev/null
		fi
	fi
	bg_wait || :
	bg_report
	;;
*)
	echo "usage: $0 arm|commit|cancel|rollback|abort|restore|redo PID" >&2
	exit 2
	;;
esac
exit 0
