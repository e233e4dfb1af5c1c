"""The embedded local sandbox: a moto server on loopback, a demo fleet, fault injection."""
