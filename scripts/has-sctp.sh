#!/usr/bin/env bash
# Exit 0 if the running kernel can create an SCTP one-to-many socket
# (AF_INET, SOCK_SEQPACKET, IPPROTO_SCTP) and listen on it; 1 otherwise.
# Prints one line saying which. Uses python3, or perl when python3 is missing.
set -euo pipefail

where="kernel $(uname -r)"
if [[ ${LOWCOMMS_UML:-} == 1 ]]; then where+=" (user-mode-linux guest)"; fi

# IPPROTO_SCTP is 132; the listen() step catches an SCTP module loaded without
# the HMAC it needs for cookies (listen then fails with ENOSYS).
py_probe='
import errno, socket, sys
def why(step, e):
    name = errno.errorcode.get(e.errno, str(e.errno))
    sys.exit("%s failed: %s (%s)" % (step, name, e.strerror))
try:
    s = socket.socket(socket.AF_INET, socket.SOCK_SEQPACKET, 132)
except OSError as e:
    why("socket(AF_INET, SOCK_SEQPACKET, IPPROTO_SCTP)", e)
try:
    s.listen(1)
except OSError as e:
    why("listen() on an SCTP socket", e)
s.close()
'
# shellcheck disable=SC2016  # perl code, not shell
pl_probe='
use Socket;
socket(my $s, AF_INET, SOCK_SEQPACKET, 132)
  or die "socket(AF_INET, SOCK_SEQPACKET, IPPROTO_SCTP) failed: $!\n";
listen($s, 1) or die "listen() on an SCTP socket failed: $!\n";
'

# The system python first: version-manager shims (pyenv) are slow to start,
# painfully so inside a user-mode-linux guest.
if [[ -x /usr/bin/python3 ]]; then
	probe=(/usr/bin/python3 -c "$py_probe")
elif command -v python3 >/dev/null 2>&1; then
	probe=(python3 -c "$py_probe")
elif command -v perl >/dev/null 2>&1; then
	probe=(perl -e "$pl_probe")
else
	echo "SCTP: cannot tell on $where: neither python3 nor perl is installed"
	exit 1
fi

if err=$("${probe[@]}" 2>&1); then
	echo "SCTP: available on $where"
	exit 0
fi
err=${err//$'\n'/ }
echo "SCTP: not available on $where: ${err:-probe failed}"
exit 1
