# shellcheck shell=sh
# The become wrapper: run by `env LC_ALL=C /bin/sh -c` with the command to
# run as root as its $0 (one argument, quoted by Become.Run), it reads the
# become password from the first line of stdin and leaves the rest for the
# command:
#   - when sudo needs no password (NOPASSWD, or a cached ticket), the line
#     is dropped;
#   - otherwise the password is checked with exactly one attempt (sudo -v),
#     then given again, ahead of the rest of stdin, to the sudo that runs
#     the command (-k: that one always reads it, whatever is cached).
# The password only ever is in this shell's variable and on pipes (printf
# is a builtin): never on a command line. The shell's read and sudo -S both
# read a byte at a time up to the newline, so the command's input arrives
# intact. A refusal is one stderr line starting "breakglass-become: "
# (becomeMarker), followed by sudo's own message.
IFS= read -r pw || exit 1
if sudo -n true 2>/dev/null; then exec sudo -n -- /bin/sh -c "$0"; fi
e=$(printf '%s\n' "$pw" | sudo -k -S -p '' -v 2>&1) || { printf 'breakglass-become: %s\n' "$e" >&2; exit 1; }
{ printf '%s\n' "$pw"; exec cat; } | sudo -k -S -p '' -- /bin/sh -c "$0"
