//! Runs a service under valgrind memcheck and reports memory errors and leaks with their stacks.
