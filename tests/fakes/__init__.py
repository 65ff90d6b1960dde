"""Fakes of trolleyfs's collaborators for the kernel-free tests (no mocks:
small working stand-ins that count what is asked of them)."""
