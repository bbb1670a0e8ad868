//! Shared valgrind support for the memcheck and helgrind plugins: running valgrind and reading its XML.
