// noclobber/race_harness/field_workload.hpp — race harness values for a struct, through one field.
//
// Overview
// --------
// The harness needs every written value to be unique and to say who wrote it (workload.hpp).
// For a struct, one std::string member can carry that: `field_workload(&model::note)` makes
// each write copy what it read (or a default-constructed T when the key is absent) and append
// the writer's tag to `note`, exactly as append_workload() does for plain strings; id_of reads
// the tag back from the same member. The other members keep whatever the store held, so the
// run also shows that they survive.
//
//   noclobber::race_options_for<decltype(models)> o;
//   o.workload = noclobber::field_workload(&model::note);
//
// `edit(T&, const write_tag&)`, when given, changes more of the value on each write (a map
// entry per writer, a counter); it runs after the tag is appended.
//
// Thread safety: as workload.hpp: the functions hold no shared mutable state.
#pragma once

#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <utility>

#include "noclobber/race_harness/workload.hpp"

namespace noclobber {

/// Values of type T whose std::string member `field` carries the harness's tags.
template <class T>
[[nodiscard]] race_workload<T> field_workload(std::string T::*field,
                                              std::function<void(T&, const write_tag&)> edit = {},
                                              std::size_t keep_last = 16) {
  race_workload<T> w;
  w.next_value = [field, edit = std::move(edit), text = append_workload(keep_last)](
                     const std::optional<T>& current, const write_tag& tag) {
    T v = current.value_or(T{});
    v.*field = text.next_value(std::optional<std::string>(v.*field), tag);
    if (edit) edit(v, tag);
    return v;
  };
  w.id_of = [field](const T& v) { return parse_write_id(v.*field); };
  return w;
}

}  // namespace noclobber
