# shellcheck shell=sh
# The forced command of probe keys (ProbeCommand in authorized_key.go: Go
# takes the one command line below, without these comments, and installs
# it as restrict,command="…" in authorized_keys, so it must hold no double
# quote). It prints the probe's line, "breakglass-probe user=NAME
# sudo=ok|no". The text is in users' authorized_keys files on hosts: a
# change to it is a change to every probe key breakglass installed.
# shellcheck disable=SC2046 # unquoted on purpose: the text must not change; the words are a user name and ok or no
echo breakglass-probe user=$(id -un) sudo=$(sudo -n true </dev/null >/dev/null 2>&1 && echo ok || echo no)
