"""Test support shared by the suite: certificates, TLS clients, HAProxy, test apps."""
