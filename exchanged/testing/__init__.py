"""Test helpers shipped with the package: real sshd, throw-away GnuPG homes, synthetic
data. The demo uses them too. Nothing here is imported by the daemon itself."""
