// A tiny in-memory S3 object API for fake_s3_server: GET (with If-None-Match -> 304), PUT and
// DELETE with If-Match / If-None-Match: *, each precondition enforced or ignored as configured,
// If-Match compared quoted (RFC 9110) or only unquoted (as radosgw 16.2 does for PUT). ETags are
// quoted 32-hex-digit counters, so they never repeat. Thread-safe (one mutex).
#pragma once

#include <cstdio>
#include <map>
#include <mutex>
#include <string>

#include "fake_s3_server.hpp"

namespace nc_s3_test {

struct mini_s3 {
  struct rules {
    bool create_if_absent = true;    // If-None-Match: * enforced on PUT
    bool if_match = true;            // If-Match enforced on PUT
    bool if_match_unquoted = false;  // PUT's If-Match compared with the bare hex only
    bool delete_if_match = true;     // If-Match enforced on DELETE
  } enforce;

  std::mutex mutex;
  std::map<std::string, std::pair<std::string, std::string>> objects;  // target -> (body, etag)
  unsigned next = 0;

  std::string fresh_etag() {
    char buf[40];
    std::snprintf(buf, sizeof buf, "\"%032x\"", ++next);
    return buf;
  }

  static std::string bare(const std::string& etag) {
    return etag.size() >= 2 ? etag.substr(1, etag.size() - 2) : etag;
  }

  action operator()(const request& r) {
    std::lock_guard lock(mutex);
    auto it = objects.find(r.target);
    const std::string if_match = r.header("if-match"), if_none = r.header("if-none-match");
    auto matches = [&](bool unquoted_only) {
      return it != objects.end() &&
             (unquoted_only ? if_match == bare(it->second.second) : if_match == it->second.second);
    };
    if (r.method == "GET") {
      if (it == objects.end()) return action::status_with(404, "Not Found", "NoSuchKey");
      if (!if_none.empty() && if_none == it->second.second)
        return {action::answer, 304, "Not Modified", {"ETag: " + it->second.second}, ""};
      return {action::answer, 200, "OK", {"ETag: " + it->second.second}, it->second.first};
    }
    if (r.method == "PUT") {
      if (if_none == "*" && enforce.create_if_absent && it != objects.end())
        return action::status_with(412, "Precondition Failed", "PreconditionFailed");
      if (!if_match.empty() && enforce.if_match) {
        if (it == objects.end()) return action::status_with(404, "Not Found", "NoSuchKey");
        if (!matches(enforce.if_match_unquoted))
          return action::status_with(412, "Precondition Failed", "PreconditionFailed");
      }
      const std::string etag = fresh_etag();
      objects[r.target] = {r.body, etag};
      return action::ok(etag);
    }
    if (r.method == "DELETE") {
      if (!if_match.empty() && enforce.delete_if_match) {
        if (it == objects.end()) return action::status_with(404, "Not Found", "NoSuchKey");
        if (!matches(false)) return action::status_with(412, "Precondition Failed", "PreconditionFailed");
      }
      objects.erase(r.target);
      return {action::answer, 204, "No Content", {}, ""};
    }
    return action::status_with(405, "Method Not Allowed", "MethodNotAllowed");
  }
};

}  // namespace nc_s3_test
