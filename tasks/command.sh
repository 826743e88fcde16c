# shellcheck shell=sh
# shellcheck disable=SC2154 # creates removes chdir cmd headn tailn: set by the header
# The command module's wrapper, run by /bin/sh -s in one round trip after
# a header (commandOp.script) that sets:
#   creates   skip the command when this path exists ("" for no guard)
#   removes   skip it unless this path exists ("" for no guard)
#   chdir     the directory it runs in ("" for root's home)
#   cmd       the command, run by /bin/sh -c
#   headn tailn how many bytes of each stream come back from its start and end
# The guards are tested here, when the command runs, whatever the facts
# said: an earlier task may have changed them. It prints "skip",
# "nochdir", or "ran STATUS" followed by two frames (stdout, stderr), each
# "NAME SIZE HEAD TAIL\n" then HEAD+TAIL bytes then "\n", then "guard yes"
# or "guard no" for each guard path set (parseCommandOutput).
if [ -n "$creates" ] && [ -e "$creates" ]; then echo skip; exit 0; fi
if [ -n "$removes" ] && [ ! -e "$removes" ]; then echo skip; exit 0; fi
t=$(mktemp -d) || exit 1
trap 'rm -rf -- "$t"' EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM
if [ -n "$chdir" ] && ! cd -- "$chdir" 2>/dev/null; then echo nochdir; exit 0; fi
# Its stdin is /dev/null, not the rest of this script; its output goes to
# files, so that only the head and tail of each stream come back.
/bin/sh -c "$cmd" </dev/null >"$t/out" 2>"$t/err"
rc=$?
echo "ran $rc"
# A process the command left running may still write to its output:
# every read takes exactly the bytes its frame announces.
emit() {
	n=$(wc -c <"$2" | tr -d ' ')
	if [ "$n" -le $((headn + tailn)) ]; then
		printf '%s %s %s 0\n' "$1" "$n" "$n"; head -c "$n" -- "$2"
	else
		printf '%s %s %s %s\n' "$1" "$n" "$headn" "$tailn"; head -c "$headn" -- "$2"; tail -c "$tailn" -- "$2"
	fi
	echo
}
emit stdout "$t/out"
emit stderr "$t/err"
# The guards as the command left them, for the facts of later tasks.
for g in "$creates" "$removes"; do
	if [ -z "$g" ]; then continue; fi
	if [ -e "$g" ]; then echo 'guard yes'; else echo 'guard no'; fi
done
