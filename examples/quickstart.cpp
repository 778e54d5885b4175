// Placeholder-free minimal program: replaced by the README quick start once blocks land.
#include <noclobber/outcome.hpp>

#include <cstdio>

int main() {
  auto r = noclobber::write_result<long>::applied(1);
  std::printf("%s\n", std::string(noclobber::to_string(r.status)).c_str());
  return r.ok() ? 0 : 1;
}
