// Compile-fail control: a complete store passes check_conditional_writer (this must compile).
#include <cstdint>
#include <string>

#include "noclobber/conditional_writer.hpp"

struct complete_store {
  using key_type = std::string;
  using value_type = std::string;
  using token_type = std::uint64_t;
  noclobber::read_result<std::string, std::uint64_t> read(const std::string&);
  noclobber::write_result<std::uint64_t> write_if_match(const std::string&, const std::uint64_t&,
                                                        const std::string&);
  noclobber::write_result<std::uint64_t> create_if_absent(const std::string&, const std::string&);
};

static_assert(noclobber::check_conditional_writer<complete_store>());
