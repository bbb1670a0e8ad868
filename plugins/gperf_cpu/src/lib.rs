//! Profiles a service's CPU use with gperftools' libprofiler and reports its hottest functions and a flame graph.
