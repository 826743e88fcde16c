# shellcheck shell=sh
bg_file() {
	l=0; [ -L "$1" ] && l=1
	if [ -f "$1" ]; then
		printf 'file %s %s %s\n' "$(stat -L -c '%u %g %a' -- "$1")" "$l" "$1"
		base64 -- "$1" 2>/dev/null
		echo "end"
	elif [ -e "$1" ] || [ -L "$1" ]; then
		printf 'other %s %s\n' "$l" "$1"
	fi
}
