// Shared by tests/servers/test_server_s3*.cpp: the S3 servers scripts/test_servers.sh starts
// (scripts/servers/radosgw.sh, scripts/servers/s3rver.sh) as adapter options, from the environment
// (a test FAILS when a variable is missing).
#pragma once

#include <noclobber/adapters/s3.hpp>

#include <string>

#include "s3_options.hpp"
#include "server_env.hpp"

namespace nc_s3 {

/// Options for one store on `s`'s bucket.
inline noclobber::s3::options options_for(
    server s, noclobber::s3::enforcement check = noclobber::s3::enforcement::probe) {
  return options_from(
      s, [](const char* variable) { return nc_test::server_env(variable); }, check);
}

}  // namespace nc_s3
