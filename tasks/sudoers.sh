# shellcheck shell=sh
# shellcheck disable=SC2154 # d f new old mode content want users cu: set by the header
# The sudoers drop-in install transaction, run by /bin/sh -s in one round
# trip, as a step of an apply script (whose prelude, nofollow.sh, defines
# the one writer: bg_temp, bg_commit, bg_keep, bg_bak), after a header
# (Sudoers.script) that sets:
#   d f       the drop-in directory and the drop-in
#   new old   this run's own names for the new and the previous file
#             (sudo ignores them)
#   mode      install, remove or none (only clear what killed runs left)
#   content   the new drop-in (mode install)
#   want      the privilege sudo -l -U must list (mode install)
#   users     the users to confirm it for, one per word (mode install)
#   cu        the control user whose passwordless sudo must survive; empty
#             when it cannot change or is not checked
# It reports on stdout ("status", "stage", "| " lines) and exits 0 when it
# ran to the end, whatever the outcome.
PATH=/usr/sbin:/usr/bin:/sbin:/bin; export PATH
LC_ALL=C; export LC_ALL
umask 077
bak=$(bg_bak "$f")
# The restore puts the previous state back only while the drop-in is
# still as this run left it: never over (or removing) another run's.
# shellcheck disable=SC3013 # -ef: dash and bash both have it
case $mode in
install) ours() { [ -e "$new" ] && [ "$f" -ef "$new" ]; } ;;
remove) ours() { [ ! -e "$f" ] && [ ! -L "$f" ]; } ;;
*) ours() { false; } ;;
esac
had=0
tmp=
trap 'rm -f -- ${tmp:+"$tmp"} "$new" "$old"' EXIT
report() {
	printf 'status %s\nstage %s\n' "$1" "$2"
	while IFS= read -r l; do printf '| %s\n' "$l"; done <<BREAKGLASS_REPORT
$3
BREAKGLASS_REPORT
}
restore() {
	[ -z "$tmp" ] || rm -f -- "$tmp"
	if ! ours; then echo 'restored other'; return; fi
	if [ "$had" = 1 ]; then mv -f -- "$old" "$f"; else rm -f -- "$f"; fi
	# shellcheck disable=SC2181 # the status of either branch above
	if [ $? = 0 ]; then echo 'restored ok'; else echo 'restored failed'; fi
	sync -- "$d" 2>/dev/null || sync
}
command -v visudo >/dev/null 2>&1 || { report failed precheck "visudo not found: is sudo installed?"; exit 0; }
[ -d "$d" ] || { report failed precheck "$d does not exist"; exit 0; }
# What earlier runs killed mid-transaction left of this drop-in: their
# new and old names (the host lock makes any such name a dead run's). A
# new name goes. Of the old names, which hold a previous version, the
# newest (by ctime) becomes the backup, what the run would have kept had
# it finished, unless it is the drop-in or the backup already; the rest
# go. None is put back in force: this run's change sets the drop-in.
# Only regular files and symbolic links with exactly these names are
# touched, in $d itself, which root alone can change; no link is followed.
leftovers() (
	bg_pin "$d" || exit 1
	if ! bg_trusted; then echo "not touching what killed runs left in $d: users other than root can change it"; exit 1; fi
	b=${f##*/} keep='' kt=''
	for e in "./.$b.breakglass-new."???????????? "./.$b.breakglass-old."????????????; do
		case ${e##*.} in *[!0-9a-f]*) continue ;; esac
		[ -L "$e" ] || [ -f "$e" ] || continue
		case $e in "./.$b.breakglass-new."*) rm -f -- "$e" || exit 1; continue ;; esac
		if [ -L "$e" ]; then rm -f -- "$e" || exit 1; continue; fi
		# shellcheck disable=SC3013 # -ef: dash and bash both have it
		if { [ -f "./$b" ] && [ ! -L "./$b" ] && [ "$e" -ef "./$b" ]; } || [ "$e" -ef "./.$b$bg_bak" ]; then rm -f -- "$e" || exit 1; continue; fi
		c=$(stat -c %Z -- "$e") || exit 1
		if [ -n "$keep" ] && [ "$c" -lt "$kt" ]; then rm -f -- "$e" || exit 1; continue; fi
		[ -z "$keep" ] || rm -f -- "$keep" || exit 1
		keep=$e kt=$c
	done
	[ -z "$keep" ] || bg_keep "$d/${keep#./}" "$f"
)
if ! out=$(leftovers 2>&1); then report failed precheck "cannot clear what killed runs left beside $f: $out"; exit 0; fi
[ "$mode" != none ] || { report ok 'done' ''; exit 0; }
if [ -n "$cu" ]; then
	# Whether the control user has passwordless sudo now; the change
	# must not take it away (it would cut this run's own become).
	ctrl() { command -v runuser >/dev/null 2>&1 && runuser -u "$cu" -- sudo -n true </dev/null >/dev/null 2>&1; }
	ctrl_before=0; if ctrl; then ctrl_before=1; fi
fi
if [ -L "$f" ] || { [ -e "$f" ] && [ ! -f "$f" ]; }; then report failed precheck "$f is not a regular file; remove it by hand"; exit 0; fi
if [ -f "$f" ]; then
	ln -f -- "$f" "$old" || { report failed precheck "cannot back up $f to $old"; exit 0; }
	had=1
else
	[ ! -e "$bak" ] && [ ! -L "$bak" ] || rm -f -- "$bak"
fi
case $mode in
install)
	# The new file, root's, 0440, fsynced, beside the old one; checked
	# alone, then renamed over it. The previous version stays as $old
	# until the change is kept: the restore puts it back.
	if ! out=$(printf '%s' "$content" | bg_temp "$f" 0:0 0440 2>&1); then report failed precheck "cannot write a new $f with owner root and mode 0440: $out"; exit 0; fi
	tmp=$out
	if ! out=$(visudo -cf "$tmp" </dev/null 2>&1); then rm -f -- "$tmp"; report failed visudo-file "$out"; exit 0; fi
	ln -f -- "$tmp" "$new" || { rm -f -- "$tmp"; report failed precheck "cannot link $tmp to $new"; exit 0; }
	if ! bg_commit "$tmp" "$f" nobak; then restore; report failed install "cannot install $f"; exit 0; fi
	tmp=
	;;
remove)
	rm -f -- "$f" || { report failed install "cannot remove $f"; exit 0; }
	sync -- "$d" 2>/dev/null || sync
	;;
esac
# Whether the tree was valid before the change tells the operator whose
# fault a failure is: after the restore the tree is as it was. It may be
# invalid because of the very file this task repairs (wrong owner or mode,
# broken content).
if ! out=$(visudo -c </dev/null 2>&1); then
	restore
	if ! visudo -c </dev/null >/dev/null 2>&1; then out="the sudoers tree was invalid before this change already, fix it first:
$out"; fi
	report failed visudo-tree "$out"; exit 0
fi
if [ "$mode" = install ]; then
	# sudo -l -U exits 0 even for a user who may run nothing: read its
	# text. Long lines wrap at whitespace, so compare with all whitespace
	# squeezed to single spaces.
	for u in $users; do
		out=$(sudo -l -U "$u" </dev/null 2>&1); rc=$?
		# shellcheck disable=SC2086 # split on purpose, globbing off
		set -f; set -- $out; set +f; got="$*"
		case "$rc $got " in
		0\ *"$want "*|0\ *"$want,"*) ;;
		0\ *) restore; report failed confirm "sudo -l -U $u does not list \"$want\" (is $d included by /etc/sudoers?):
$out"; exit 0 ;;
		*) restore; report failed confirm "sudo -l -U $u failed (exit $rc):
$out"; exit 0 ;;
		esac
	done
fi
if [ -n "$cu" ] && [ "$ctrl_before" = 1 ] && ! ctrl; then restore; report failed control "$cu could run sudo -n true before this change and cannot after it"; exit 0; fi
# The change is kept: so is the previous version, as its backup.
if [ "$had" = 1 ]; then bg_keep "$old" "$f" || true; fi
report ok 'done' ''
