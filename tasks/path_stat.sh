# shellcheck shell=sh
# PathQuery's script, after a header that sets p, an absolute path: one
# line, "UID GID MODE(hex) PATH" of what p names (stat -L: symbolic links
# followed), or "- - - PATH" when there is nothing there.
# shellcheck disable=SC2154 # p: set by the header
LC_ALL=C stat -L -c '%u %g %f %n' -- "$p" 2>/dev/null || printf -- '- - - %s\n' "$p"
