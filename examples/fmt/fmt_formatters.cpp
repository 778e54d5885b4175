// example: examples/fmt/fmt_formatters.cpp
// Outcomes and results in log lines through {fmt}: the same text as operator<< (docs/fmt.md).
#include <cstdio>
#include <string>

#include <fmt/format.h>
#include <noclobber/fmt/ostream.hpp>
#include <noclobber/memory_store.hpp>
#include <noclobber/read_modify_write.hpp>

int main() {
  noclobber::memory_store<std::string, int> store;
  const auto created = store.create_if_absent("hits", 1);
  const auto stale = store.read("hits");
  const auto first = store.write_if_match("hits", stale.token, stale.value + 1);
  const auto second = store.write_if_match("hits", stale.token, stale.value + 1);  // same token
  const auto rmw =
      noclobber::read_modify_write(store, "hits", [](const std::optional<int>& v) { return *v + 1; });

  const std::string lines[] = {
      fmt::format("create: {}", created),  // applied (token 1)
      fmt::format("read:   {}", stale),    // found 1 (token 1)
      fmt::format("first:  {}", first),    // applied (token 2)
      fmt::format("second: {}", second),   // conflict
      fmt::format("rmw:    {}", rmw),      // applied 3 (token 3) after 1 attempt
      fmt::format("[{:>10}]", second.status),
  };
  for (const auto& line : lines) std::printf("%s\n", line.c_str());

  // Each text is to_text's, the one operator<< writes.
  const bool same = fmt::format("{}", created) == to_text(created) &&
                    fmt::format("{}", stale) == to_text(stale) && fmt::format("{}", second) == "conflict" &&
                    fmt::format("{}", rmw) == to_text(rmw);
  return same ? 0 : 1;
}
