"""Integration tests against real outside programs (an OpenSSH sshd started by the test)."""
