# shellcheck shell=sh
# shellcheck disable=SC2154 # f, tmp, dir, mode: set by sshdInstallScript before this script
# The sshd module's install, after its header (which defines bg_write_tmp:
# write the new file to $tmp): write the file atomically, validate the whole
# configuration with sshd -t and reload sshd.
bg_fail() { echo "status failed"; printf '| %s\n' "$@"; rm -f -- "$tmp"; exit 0; }
# shellcheck disable=SC2174 # as before: -m is for the directory sshd reads (a missing parent gets the umask)
if [ ! -d "$dir" ]; then mkdir -p -m 0755 -- "$dir" || bg_fail "create $dir"; fi
if [ ! -d /run/sshd ]; then mkdir -m 0755 /run/sshd && echo "| created /run/sshd (sshd's privilege separation directory)"; fi
rm -f -- "$tmp"
bg_write_tmp
chown 0:0 "$tmp" && chmod "$mode" "$tmp" || bg_fail "chown/chmod $tmp"
sync -- "$tmp" 2>/dev/null
mv -f -- "$tmp" "$f" || bg_fail "rename $tmp to $f"
sync -- "$dir" 2>/dev/null
if ! out=$(sshd -t 2>&1); then
	echo "status invalid"
	printf '%s\n' "$out" | sed 's/^/| /'
	exit 0
fi
if ! out=$(bg_sshd_reload 2>&1); then
	echo "status reload-failed"
	printf '%s\n' "$out" | sed 's/^/| /'
	exit 0
fi
echo "status reloaded"
