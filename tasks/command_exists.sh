# shellcheck shell=sh
# The command module's guard query (creates:, removes:), after a header
# that sets p, an absolute path: "yes" when something is there (a symbolic
# link is followed, as the guard's test does), else "no".
# shellcheck disable=SC2154 # p: set by the header
if [ -e "$p" ]; then echo yes; else echo no; fi
