#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>

// Under the sanitizers (RDROP_SANITIZE_TESTS): stop at the first report,
// with a stack. Leak checking needs ptrace-free process inspection, which
// some containers lack; leaks are not what these runs are for.
#if defined(__SANITIZE_ADDRESS__)
extern "C" const char* __asan_default_options() {
  return "detect_leaks=0:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1";
}
extern "C" const char* __ubsan_default_options() { return "print_stacktrace=1:halt_on_error=1"; }
#endif
