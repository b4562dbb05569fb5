"""Fixtures that install and start the real external parts the tests talk to."""
