# shellcheck shell=sh
# Starts every round trip of fact queries (writeQueries in gather.go),
# before the preludes of their kinds and the queries themselves: every
# query reads the host in the C locale with the system's PATH.
LC_ALL=C; export LC_ALL
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin; export PATH
