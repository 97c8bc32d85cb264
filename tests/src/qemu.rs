//! QEMU helpers (filled in with the PXE boot tests).
