// Control for locked_read_modify_write_key_mismatch.cpp: the same code with a lock map keyed like
// the store must compile (tests/compile_fail/CMakeLists.txt).
#define NOCLOBBER_COMPILE_FAIL_CONTROL
#include "locked_read_modify_write_key_mismatch.cpp"  // NOLINT(bugprone-suspicious-include)
