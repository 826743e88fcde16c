# shellcheck shell=sh
# shellcheck disable=SC2154 # f, tmp, dir, mode: set by sshdInstallScript before this script
# The sshd module's install, after its header (nofollow.sh, and
# bg_write_tmp, which prints the new file): write the file with the one
# writer (bg_temp, bg_commit: the previous version kept as
# .NAME.breakglass.bak, as the transaction's Begin kept it too), validate
# the whole configuration with sshd -t and reload sshd. A drop-in is
# checked only with the rest of the configuration, so it is checked in
# place; the transaction takes back what sshd -t refuses.
bg_fail() { echo "status failed"; printf '| %s\n' "$@"; [ -z "$tmp" ] || rm -f -- "$tmp"; exit 0; }
# shellcheck disable=SC2174 # as before: -m is for the directory sshd reads (a missing parent gets the umask)
if [ ! -d "$dir" ]; then mkdir -p -m 0755 -- "$dir" || bg_fail "create $dir"; fi
if [ ! -d /run/sshd ]; then mkdir -m 0755 /run/sshd && echo "| created /run/sshd (sshd's privilege separation directory)"; fi
# The fixed temp name of breakglass before the one writer, should a run
# killed then have left it.
rm -f -- "$tmp"
tmp=
t=$(bg_temp "$f" 0:0 "$mode" bg_write_tmp 2>&1) || bg_fail "write $f" "$t"
tmp=$t
out=$(bg_commit "$tmp" "$f" 2>&1) || bg_fail "rename $tmp to $f" "$out"
tmp=
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
