//! Harness for the end-to-end tests: locates the built binaries and runs them on loopback.
