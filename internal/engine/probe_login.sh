# shellcheck shell=sh
# The probe a verify login runs (VerifyCommand in prove.go; Go sends the
# one command line below, without these comments, as the session's
# command, so the user's login shell runs it). It prints one line,
# "breakglass-probe user=NAME sudo=ok|no" (ParseProbe reads it): the user
# name as sshd set LOGNAME for the account it authenticated (id -un when it
# is unset), and whether sudo works without a password. It forks only for
# sudo, like the plain `id -un; sudo -n true` it is measured against.
printf 'breakglass-probe user=%s sudo=' "${LOGNAME:-$(id -un)}"; if sudo -n true </dev/null >/dev/null 2>&1; then echo ok; else echo no; fi
