//! Shared gperftools support: reading CPU and heap profiles natively and symbolizing them.
