// noclobber/version.hpp — the library's version, as macros and as constants.
//
// Overview
// --------
// One source of truth for the release number that the CMake project, the Conan recipe and the
// vcpkg port all repeat (CI checks that they agree). Use the macros in `#if` and the constants
// in code:
//
//   #if NOCLOBBER_VERSION >= 100  // 0.1.0 and later
//   static_assert(noclobber::version.major == 0);
//
// NOCLOBBER_VERSION is MAJOR * 10000 + MINOR * 100 + PATCH.
//
// Thread safety: compile-time constants only.
#pragma once

#include <string_view>

#define NOCLOBBER_VERSION_MAJOR 0
#define NOCLOBBER_VERSION_MINOR 1
#define NOCLOBBER_VERSION_PATCH 0
#define NOCLOBBER_VERSION_STRING "0.1.0"
#define NOCLOBBER_VERSION \
  (NOCLOBBER_VERSION_MAJOR * 10000 + NOCLOBBER_VERSION_MINOR * 100 + NOCLOBBER_VERSION_PATCH)

namespace noclobber {

/// The library's version as a value: `noclobber::version.minor`, `noclobber::version.text`.
struct version_info {
  int major;
  int minor;
  int patch;
  std::string_view text;
};

inline constexpr version_info version{NOCLOBBER_VERSION_MAJOR, NOCLOBBER_VERSION_MINOR,
                                      NOCLOBBER_VERSION_PATCH, NOCLOBBER_VERSION_STRING};

}  // namespace noclobber
