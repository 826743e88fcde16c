# shellcheck shell=sh
# shellcheck disable=SC2154 # S, T, keep, files: set by Txn.beginScript before this script
# The transaction's begin, after its header: refuse while another armed
# transaction runs, make $T, copy every file that exists (files: one
# "INDEX PATH BACKUP" line each) and report "file INDEX present|absent".
bg_fail() { echo "status failed"; printf '| %s\n' "$@"; exit 0; }
# Another armed transaction (a live sleeper and no claim) would restore its
# own backups over this change: refuse.
for d in "$S"/*/; do
	[ -d "$d" ] || continue
	{ [ -e "${d}claim" ] || [ -L "${d}claim" ]; } && continue
	pid=$(cat "${d}pid" 2>/dev/null) || continue
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
		echo "status busy"
		echo "| $(basename "$d") (pid $pid)"
		exit 0
	fi
done
mkdir -p "$S" || bg_fail "create $S"
chmod 0700 "${S%/*}" "$S" || bg_fail "chmod $S"
mkdir -m 0700 "$T" "$T/files" || bg_fail "create $T"
while read -r i f bak; do
	[ -n "$f" ] || continue
	if [ -e "$f" ] || [ -L "$f" ]; then
		cp -a -- "$f" "$T/files/$i" || bg_fail "copy $f"
		{ cp -a -- "$f" "$bak.tmp" && mv -fT -- "$bak.tmp" "$bak"; } || bg_fail "back up $f to $bak"
		sync -- "$bak" 2>/dev/null
		echo "file $i present"
	else
		echo "file $i absent"
	fi
done <<BREAKGLASS_FILES
$files
BREAKGLASS_FILES
# Keep the newest transactions that ended (or were never armed: a run
# that died first), with their copies.
ls -1 "$S" | sort -r | tail -n +"$((keep + 1))" | while read -r old; do
	case $old in *[!0-9TZa-f-]*|'') continue ;; esac
	if [ -f "$S/$old/done" ] || [ ! -e "$S/$old/revert.sh" ]; then rm -rf -- "${S:?}/$old"; fi
done
echo "status begun"
