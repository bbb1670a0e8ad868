//! Profiles a service's heap with gperftools' libtcmalloc and reports memory by call site and the peak.
