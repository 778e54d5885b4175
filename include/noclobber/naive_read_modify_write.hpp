// noclobber/naive_read_modify_write.hpp — THE BUG: a blind read-modify-write, kept on purpose.
//
// Overview
// --------
// `naive_read_modify_write(store, key, fn)` reads the value, calls `fn`, and writes the result
// back with the store's unconditional `overwrite`. Nothing checks whether somebody else wrote
// the key between the read and the write, so when two callers read the same version, the
// second overwrite silently erases the first caller's update. This is exactly the lost update
// behind the real-world scenarios noclobber is built around (the SQLite file kept as one
// object-store object: download → modify → put_object without If-Match; the concurrent
// disjoint-key env PATCH: read the env vars → merge → write them all back; the cache refresh that
// overwrites an edit: save the whole model read earlier).
//
// DO NOT USE IT FOR REAL WRITES. It exists as the negative control: the race harness and the
// tests run it under the same race as read_modify_write to show that the race is real and
// that the tests can fail (W forced writers lose W − 1 updates). Use read_modify_write
// (read_modify_write.hpp) or locked_read_modify_write (locked_read_modify_write.hpp) instead.
//
// It takes the same `fn` (update<Value>: a value, keep or abort) and returns the same
// rmw_result as read_modify_write, so the two can be swapped in a harness. It makes exactly one
// attempt: a failed read or write ends it with outcome gave_up; there is no retry.
//
// Thread safety: holds no lock of its own; as thread-safe as the store (and as unsafe as the
// pattern).
#pragma once

#include <functional>
#include <optional>
#include <type_traits>
#include <utility>

#include "noclobber/conditional_writer.hpp"
#include "noclobber/outcome.hpp"
#include "noclobber/read_modify_write.hpp"

namespace noclobber {

/// Reads, calls fn, overwrites: loses concurrent updates. The negative control, not a tool.
template <class Store, class Fn>
[[nodiscard]] store_rmw_result_t<Store> naive_read_modify_write(Store& store, const store_key_t<Store>& key,
                                                                Fn&& fn) {
  static_assert(overwritable_store<Store>,
                "noclobber: naive_read_modify_write needs the store's unconditional "
                "`overwrite(const key_type&, const value_type&)` returning write_result<token_type>");
  static_assert(detail::check_rmw_function<std::remove_reference_t<Fn>, store_value_t<Store>>());
  using traits = store_traits<std::remove_cvref_t<Store>>;
  store_rmw_result_t<Store> out;
  out.attempts = 1;
  auto read = traits::read(store, key);
  if (read.failed()) {
    out.last_status = as_write_status(read.status);
    out.last_error = std::move(read.error);
    out.reason =
        out.last_status == write_status::permanent ? stop_reason::permanent : stop_reason::attempts_exhausted;
    return out;
  }
  std::optional<store_value_t<Store>> current;
  if (read.found()) current.emplace(std::move(read.value));
  update<store_value_t<Store>> u = std::invoke(fn, std::as_const(current));
  if (!u.is_write()) {
    out.outcome = u.is_keep() ? rmw_outcome::unchanged : rmw_outcome::aborted;
    out.abort_reason = u.reason();
    out.reason = stop_reason::decided;
    out.last_status = write_status::applied;
    if (read.found()) out.token = std::move(read.token);
    out.value = std::move(current);
    return out;
  }
  auto w = traits::overwrite(store, key, u.value());  // <- the lost update happens here
  out.last_status = w.status;
  out.last_error = std::move(w.error);
  if (w.status == write_status::applied) {
    out.outcome = rmw_outcome::applied;
    out.reason = stop_reason::applied;
    out.created = !read.found();
    out.token = std::move(w.token);
    out.value = std::move(u).value();
    return out;
  }
  out.indeterminate = w.status == write_status::indeterminate;
  out.reason = w.status == write_status::permanent       ? stop_reason::permanent
               : w.status == write_status::indeterminate ? stop_reason::indeterminate
                                                         : stop_reason::attempts_exhausted;
  return out;
}

}  // namespace noclobber
