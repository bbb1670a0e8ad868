//! Runs a service under valgrind helgrind and reports data races, lock-order violations and pthread misuse.
