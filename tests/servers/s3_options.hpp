// The S3 servers scripts/test_servers.sh starts (scripts/servers/radosgw.sh, s3rver.sh) as adapter
// options, the values read through a function (Catch2-free: writer processes use it too).
#pragma once

#include <noclobber/adapters/s3.hpp>

#include <string>

namespace nc_s3 {

enum class server { radosgw, s3rver };

inline const char* name(server s) {
  return s == server::radosgw ? "radosgw" : "s3rver";
}

/// Options for one store on `s`'s bucket; `env(variable)` gives each NOCLOBBER_RGW_* /
/// NOCLOBBER_S3RVER_* value.
template <class Env>
noclobber::s3::options options_from(server s, Env env,
                                    noclobber::s3::enforcement check = noclobber::s3::enforcement::probe) {
  const std::string p = s == server::radosgw ? "NOCLOBBER_RGW_" : "NOCLOBBER_S3RVER_";
  noclobber::s3::options o;
  o.endpoint = env((p + "ENDPOINT").c_str());
  o.bucket = env((p + "BUCKET").c_str());
  o.creds.access_key_id = env((p + "ACCESS_KEY").c_str());
  o.creds.secret_access_key = env((p + "SECRET_KEY").c_str());
  o.check = check;
  // radosgw 16.2 matches a PUT's If-Match only without quotes; the probe finds that itself, a
  // store that trusts the server must be told.
  if (s == server::radosgw) o.if_match_form = noclobber::s3::etag_form::unquoted;
  return o;
}

}  // namespace nc_s3
