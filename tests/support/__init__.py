"""Helpers for the test suite: real local services (Azurite) and the credentials they accept."""
