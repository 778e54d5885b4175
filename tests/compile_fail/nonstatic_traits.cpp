// Compile-fail: a store_traits specialisation whose functions lack `static` is told to declare
// them static (not that read / write_if_match / create_if_absent are missing).
#include <cstdint>
#include <string>

#include "noclobber/conditional_writer.hpp"

struct foreign_kv {};  // a store type the user cannot edit

template <>
struct noclobber::store_traits<foreign_kv> {
  using key_type = int;
  using value_type = std::string;
  using token_type = std::uint64_t;
  read_result<std::string, std::uint64_t> read(foreign_kv&, const int&);  // missing `static`
  static write_result<std::uint64_t> write_if_match(foreign_kv&, const int&, const std::uint64_t&,
                                                    const std::string&);
  static write_result<std::uint64_t> create_if_absent(foreign_kv&, const int&, const std::string&);
};

static_assert(noclobber::check_conditional_writer<foreign_kv>());
