//! Traces every system call of a service with strace and summarises them.
