//! Tests of the strace execution environments, on real programs with the real tools.
