//! Tests of the gperf execution environments, on real programs with the real tools.
