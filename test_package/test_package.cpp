// Conan test package: a conditional write on noclobber's memory_store, and a conflict on a stale token.
#include <noclobber/noclobber.hpp>

#include <cstdio>
#include <string>

int main() {
  noclobber::memory_store<std::string, int> store;
  auto created = store.create_if_absent("k", 1);
  auto r = store.read("k");
  auto first = store.write_if_match("k", r.token, r.value + 1);
  auto stale = store.write_if_match("k", r.token, r.value + 1);  // same old token: must conflict
  std::printf("noclobber %s: %s then %s\n", std::string(noclobber::version.text).c_str(),
              std::string(noclobber::to_string(first.status)).c_str(),
              std::string(noclobber::to_string(stale.status)).c_str());
  return created.ok() && first.ok() && stale.status == noclobber::write_status::conflict ? 0 : 1;
}
