// noclobber/typed_store.hpp — a typed view over any byte/string store, through a codec.
//
// Overview
// --------
// Every adapter stores bytes; `typed_store<Store, T, Codec>` shows such a store as a store of
// T, encoding on the way in and decoding on the way out (codec.hpp), and fulfils the same
// contract (conditional_writer.hpp), so every algorithm and the race harness run on it:
//
//   noclobber::memory_store<std::string, std::string> db;           // or any adapter
//   auto models = noclobber::typed<model>(db, noclobber::json::codec<model>{});   // a view of db
//   auto r = noclobber::read_modify_write(models, "qb",
//       [](const std::optional<model>& cur) -> noclobber::update<model> {
//         model m = cur.value_or(model{});
//         m.description = "revenue by region";
//         return m;
//       });
//
// `typed<T>(store, codec)` refers to an lvalue store and owns an rvalue one (moved in); the
// key and token types are the inner store's. Each call is one call of the inner store:
//
//   read               inner read; a found value is decoded. A value the codec cannot decode
//                      is a `permanent` read with store_error {"codec", "<key>: <codec's
//                      message>"}: read_modify_write stops there and writes nothing, so a corrupt
//                      record is reported, never replaced by a default.
//   write_if_match,    encoded, then the inner call; a value the codec cannot encode is a
//   create_if_absent,  `permanent` write with the codec's message (nothing is sent).
//   overwrite
//   erase_if_match     forwarded, when the inner store has it (erasable_writer).
//   patch_if_match     forwarded with the inner store's patch_type, when it has one
//                      (patchable_writer): a server-side patch needs no codec. Typed callables
//                      `void(T&)` still work through patch_if_unchanged's emulated path.
//
// Requirements: T is default-constructible (the contract's read_result holds one); T's `==`,
// when it has one, lets read_modify_write recognise its own indeterminate writes.
//
// Thread safety: as the inner store (one-connection adapters: one thread at a time). The
// codec's encode/decode run on the calling thread, under no noclobber lock.
#pragma once

#include <concepts>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>

#include "noclobber/codec.hpp"
#include "noclobber/conditional_writer.hpp"
#include "noclobber/outcome.hpp"

namespace noclobber {

namespace detail {
template <class S>
struct typed_patch_type {};
template <class S>
requires requires {
  typename store_patch_t<S>;
}
struct typed_patch_type<S> {
  using patch_type = store_patch_t<S>;
};

template <class Key>
std::string key_context(const Key& key) {
  if constexpr (std::is_convertible_v<const Key&, std::string_view>) {
    return "key '" + std::string(std::string_view(key)) + "'";
  } else if constexpr (std::is_arithmetic_v<Key>) {
    return "key " + std::to_string(key);
  } else {
    return "a key";
  }
}
}  // namespace detail

/// T values over `Store` (a store type, or a reference to one), encoded by `Codec`.
template <class Store, class T, class Codec>
class typed_store : public detail::typed_patch_type<std::remove_cvref_t<Store>> {
 public:
  using inner_type = std::remove_cvref_t<Store>;
  using key_type = store_key_t<inner_type>;
  using value_type = T;
  using token_type = store_token_t<inner_type>;
  using bytes_type = store_value_t<inner_type>;
  using codec_type = Codec;

  static_assert(conditional_writer<inner_type>, "noclobber::typed_store: the inner store must be a store");
  static_assert(codec<Codec, T, bytes_type>,
                "noclobber::typed_store: Codec must offer encode(const T&) -> the store's value type and "
                "decode(const value_type&) -> T (see noclobber/codec.hpp)");
  static_assert(std::default_initializable<T>, "noclobber::typed_store: T must be default-constructible");

  template <class S>
  requires std::constructible_from<Store, S&&>
  explicit typed_store(S&& store, Codec c = Codec{}) : store_(std::forward<S>(store)), codec_(std::move(c)) {}

  [[nodiscard]] inner_type& inner() noexcept { return store_; }
  [[nodiscard]] const inner_type& inner() const noexcept { return store_; }
  [[nodiscard]] const Codec& get_codec() const noexcept { return codec_; }

  read_result<T, token_type> read(const key_type& key) {
    using rr = read_result<T, token_type>;
    auto r = store_traits<inner_type>::read(store_, key);
    if (r.status == read_status::absent) return rr::make_absent();
    if (r.failed()) return rr::make_failed(r.status, std::move(r.error));
    store_error e;
    std::optional<T> v = run_decode<T>(codec_, r.value, e, detail::key_context(key));
    if (!v) return rr::make_failed(read_status::permanent, std::move(e));
    return rr::make_found(std::move(*v), std::move(r.token));
  }

  write_result<token_type> write_if_match(const key_type& key, const token_type& token, const T& value) {
    return encoded(key, value, [&](const bytes_type& b) {
      return store_traits<inner_type>::write_if_match(store_, key, token, b);
    });
  }

  write_result<token_type> create_if_absent(const key_type& key, const T& value) {
    return encoded(key, value, [&](const bytes_type& b) {
      return store_traits<inner_type>::create_if_absent(store_, key, b);
    });
  }

  write_result<token_type> overwrite(const key_type& key,
                                     const T& value) requires overwritable_store<inner_type> {
    return encoded(key, value,
                   [&](const bytes_type& b) { return store_traits<inner_type>::overwrite(store_, key, b); });
  }

  write_result<token_type> erase_if_match(const key_type& key,
                                          const token_type& token) requires erasable_writer<inner_type> {
    return store_traits<inner_type>::erase_if_match(store_, key, token);
  }

  // S stays a template parameter so that store_patch_t is looked at only when this is called
  // (clang checks a non-dependent constraint when the class is instantiated, and a store without
  // patches has no patch type), as in cached_store.
  // clang-format off
  template <class P, std::same_as<inner_type> S = inner_type>
  requires patchable_writer<S> && std::convertible_to<const P&, store_patch_t<S>>
  write_result<token_type> patch_if_match(const key_type& key, const token_type& token, const P& patch) {
    // clang-format on
    return store_traits<S>::patch_if_match(store_, key, token, patch);
  }

 private:
  template <class Send>
  write_result<token_type> encoded(const key_type& key, const T& value, Send&& send) {
    store_error e;
    std::optional<bytes_type> b = run_encode<bytes_type>(codec_, value, e, detail::key_context(key));
    if (!b) return write_result<token_type>{write_status::permanent, std::nullopt, std::move(e)};
    return send(*b);
  }

  Store store_;
  Codec codec_;
};

/// A typed view of `store`: refers to an lvalue store, owns (moves in) an rvalue one.
template <class T, class Store, class Codec>
[[nodiscard]] typed_store<Store, T, Codec> typed(Store&& store, Codec c) {
  return typed_store<Store, T, Codec>(std::forward<Store>(store), std::move(c));
}

}  // namespace noclobber
