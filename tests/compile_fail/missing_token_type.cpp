// Compile-fail: a store that names its key and value types but not its token type gets the one
// diagnostic that names token_type (not "key type" or "value type" as well).
#include <cstdint>
#include <string>

#include "noclobber/conditional_writer.hpp"

struct no_token_store {
  using key_type = std::string;
  using value_type = std::string;
  noclobber::read_result<std::string, std::uint64_t> read(const std::string&);
  noclobber::write_result<std::uint64_t> write_if_match(const std::string&, const std::uint64_t&,
                                                        const std::string&);
  noclobber::write_result<std::uint64_t> create_if_absent(const std::string&, const std::string&);
};

static_assert(noclobber::check_conditional_writer<no_token_store>());
