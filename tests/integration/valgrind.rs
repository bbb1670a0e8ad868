//! Tests of the valgrind execution environments, on real programs with the real tools.
