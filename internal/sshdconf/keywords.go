package sshdconf

import "strings"

// keywords maps sshd_config keywords (lower case) to their canonical
// spelling: OpenSSH 9.x and 10.x with Debian's additions.
var keywords = func() map[string]string {
	m := map[string]string{}
	for _, k := range []string{
		"AcceptEnv", "AddressFamily", "AllowAgentForwarding", "AllowGroups",
		"AllowStreamLocalForwarding", "AllowTcpForwarding", "AllowUsers",
		"AuthenticationMethods", "AuthorizedKeysCommand", "AuthorizedKeysCommandUser",
		"AuthorizedKeysFile", "AuthorizedPrincipalsCommand", "AuthorizedPrincipalsCommandUser",
		"AuthorizedPrincipalsFile", "Banner", "CASignatureAlgorithms", "ChallengeResponseAuthentication",
		"ChannelTimeout", "ChrootDirectory", "Ciphers", "ClientAliveCountMax", "ClientAliveInterval",
		"Compression", "DebianBanner", "DenyGroups", "DenyUsers", "DisableForwarding",
		"ExposeAuthInfo", "FingerprintHash", "ForceCommand", "GatewayPorts",
		"GSSAPIAuthentication", "GSSAPICleanupCredentials", "GSSAPIKexAlgorithms",
		"GSSAPIKeyExchange", "GSSAPIStoreCredentialsOnRekey", "GSSAPIStrictAcceptorCheck",
		"HostbasedAcceptedAlgorithms", "HostbasedAcceptedKeyTypes", "HostbasedAuthentication",
		"HostbasedUsesNameFromPacketOnly", "HostCertificate", "HostKey", "HostKeyAgent",
		"HostKeyAlgorithms", "IgnoreRhosts", "IgnoreUserKnownHosts", "Include", "IPQoS",
		"KbdInteractiveAuthentication", "KerberosAuthentication", "KerberosGetAFSToken",
		"KerberosOrLocalPasswd", "KerberosTicketCleanup", "KexAlgorithms", "ListenAddress",
		"LoginGraceTime", "LogLevel", "LogVerbose", "MACs", "Match", "MaxAuthTries", "MaxSessions",
		"MaxStartups", "ModuliFile", "PasswordAuthentication", "PermitEmptyPasswords",
		"PermitListen", "PermitOpen", "PermitRootLogin", "PermitTTY", "PermitTunnel",
		"PermitUserEnvironment", "PermitUserRC", "PerSourceMaxStartups", "PerSourceNetBlockSize",
		"PerSourcePenalties", "PerSourcePenaltyExemptList", "PidFile", "Port", "PrintLastLog", "PrintMotd",
		"PubkeyAcceptedAlgorithms", "PubkeyAcceptedKeyTypes", "PubkeyAuthentication",
		"PubkeyAuthOptions", "RDomain", "RefuseConnection", "RekeyLimit", "RequiredRSASize",
		"RevokedKeys", "SecurityKeyProvider", "SetEnv", "StreamLocalBindMask",
		"StreamLocalBindUnlink", "StrictModes", "Subsystem", "SyslogFacility", "TCPKeepAlive",
		"TrustedUserCAKeys", "UnusedConnectionTimeout", "UseDNS", "UsePAM", "VersionAddendum",
		"X11DisplayOffset", "X11Forwarding", "X11UseLocalhost", "XAuthLocation",
	} {
		m[strings.ToLower(k)] = k
	}
	return m
}()

// Canonical returns how sshd_config(5) spells keyword kw (any case), and
// whether sshd knows it.
func Canonical(kw string) (string, bool) {
	k, ok := keywords[strings.ToLower(kw)]
	return k, ok
}

// Spelling is Canonical for messages: an unknown keyword as given.
func Spelling(kw string) string {
	if k, ok := Canonical(kw); ok {
		return k
	}
	return kw
}

// aliases are deprecated names sshd still reads for a keyword.
var aliases = map[string][]string{
	"pubkeyacceptedalgorithms":     {"pubkeyacceptedkeytypes"},
	"hostbasedacceptedalgorithms":  {"hostbasedacceptedkeytypes"},
	"kbdinteractiveauthentication": {"challengeresponseauthentication"},
}

// Cumulative are the keywords whose every line counts (sshd appends their
// values), so an earlier line does not hide a later one; for every other
// keyword the first value sshd reads wins.
var Cumulative = map[string]bool{
	"allowusers": true, "denyusers": true, "allowgroups": true, "denygroups": true,
	"hostkey": true, "hostcertificate": true, "listenaddress": true, "port": true,
	"acceptenv": true, "subsystem": true,
}
