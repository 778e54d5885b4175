// noclobber/conditional_writer.hpp — the contract a store adapter fulfils.
//
// Overview
// --------
// Every algorithm in noclobber (read_modify_write, the race harness, the async forms) talks to a
// store through four operations, reached through `store_traits<Store>`:
//
//   read(s, key)                            -> read_result<value_type, token_type>
//   write_if_match(s, key, token, value)    -> write_result<token_type>   (conditional update)
//   create_if_absent(s, key, value)         -> write_result<token_type>   (conditional create)
//   erase_if_match(s, key, token)           -> write_result<token_type>   (optional)
//   patch_if_match(s, key, token, patch)    -> write_result<token_type>   (optional, sparse)
//   overwrite(s, key, value)                -> write_result<token_type>   (optional, unconditional:
//                                              the blind write that loses updates; only the naive
//                                              negative control and the race harness use it)
//
// By default `store_traits<Store>` forwards to member functions of the same names and takes the
// member types `key_type`, `value_type`, `token_type` (and `patch_type`). For a store type you
// cannot edit, specialise `store_traits` instead; the algorithms never call members directly.
//
// The contract (checked by the race harness, see docs/conditional_writer.md):
//   * write_if_match applies only if the key's current token equals `token`; otherwise it
//     reports conflict (or absent when the key is gone) and changes nothing.
//   * create_if_absent applies only if the key does not exist; otherwise `exists`.
//   * every applied write produces a token different from every token the key had before
//     (no ABA), unless the adapter documents otherwise.
//   * `indeterminate` is reported when the request may or may not have landed.
//
// Thread safety: the traits are stateless. Whether one store object may be used from several
// threads at once is the adapter's contract; the reference memory_store allows it.
//
// `check_conditional_writer<Store>()` turns a missing piece into a static_assert that names it.
#pragma once

#include <concepts>
#include <type_traits>

#include "noclobber/outcome.hpp"

namespace noclobber {

namespace detail {
// Each member type is detected on its own, so that a store missing one of them is told which.
template <class S>
struct member_key_type {};
template <class S>
requires requires {
  typename S::key_type;
}
struct member_key_type<S> {
  using key_type = typename S::key_type;
};

template <class S>
struct member_value_type {};
template <class S>
requires requires {
  typename S::value_type;
}
struct member_value_type<S> {
  using value_type = typename S::value_type;
};

template <class S>
struct member_token_type {};
template <class S>
requires requires {
  typename S::token_type;
}
struct member_token_type<S> {
  using token_type = typename S::token_type;
};

template <class S>
struct member_patch_type {};
template <class S>
requires requires {
  typename S::patch_type;
}
struct member_patch_type<S> {
  using patch_type = typename S::patch_type;
};
}  // namespace detail

/// Customisation point. The primary template forwards to members; each function exists only
/// when the member does, so concept checks stay SFINAE-friendly.
template <class Store>
struct store_traits : detail::member_key_type<Store>,
                      detail::member_value_type<Store>,
                      detail::member_token_type<Store>,
                      detail::member_patch_type<Store> {
  template <std::same_as<Store> S, class K>
  static auto read(S& s, const K& key) -> decltype(s.read(key)) {
    return s.read(key);
  }
  template <std::same_as<Store> S, class K, class T, class V>
  static auto write_if_match(S& s, const K& key, const T& token, const V& value)
      -> decltype(s.write_if_match(key, token, value)) {
    return s.write_if_match(key, token, value);
  }
  template <std::same_as<Store> S, class K, class V>
  static auto create_if_absent(S& s, const K& key, const V& value)
      -> decltype(s.create_if_absent(key, value)) {
    return s.create_if_absent(key, value);
  }
  template <std::same_as<Store> S, class K, class T>
  static auto erase_if_match(S& s, const K& key, const T& token) -> decltype(s.erase_if_match(key, token)) {
    return s.erase_if_match(key, token);
  }
  template <std::same_as<Store> S, class K, class T, class P>
  static auto patch_if_match(S& s, const K& key, const T& token, const P& patch)
      -> decltype(s.patch_if_match(key, token, patch)) {
    return s.patch_if_match(key, token, patch);
  }
  template <std::same_as<Store> S, class K, class V>
  static auto overwrite(S& s, const K& key, const V& value) -> decltype(s.overwrite(key, value)) {
    return s.overwrite(key, value);
  }
};

template <class Store>
using store_key_t = typename store_traits<std::remove_cvref_t<Store>>::key_type;
template <class Store>
using store_value_t = typename store_traits<std::remove_cvref_t<Store>>::value_type;
template <class Store>
using store_token_t = typename store_traits<std::remove_cvref_t<Store>>::token_type;
template <class Store>
using store_patch_t = typename store_traits<std::remove_cvref_t<Store>>::patch_type;
template <class Store>
using store_read_result_t = read_result<store_value_t<Store>, store_token_t<Store>>;
template <class Store>
using store_write_result_t = write_result<store_token_t<Store>>;

/// The store names its key, value and token types.
// clang-format off
template <class Store>
concept store_types =
    requires {
      typename store_key_t<Store>;
      typename store_value_t<Store>;
      typename store_token_t<Store>;
    } &&
    std::default_initializable<store_value_t<Store>> &&
    std::default_initializable<store_token_t<Store>> &&
    std::equality_comparable<store_token_t<Store>>;
// clang-format on

/// read(key) -> read_result<value, token>
template <class Store>
concept readable_store = store_types<Store> && requires(Store& s, const store_key_t<Store>& k) {
  { store_traits<Store>::read(s, k) } -> std::same_as<store_read_result_t<Store>>;
};

/// The core contract: read with a version token, write if unchanged, create if absent.
template <class Store>
concept conditional_writer = readable_store<Store> &&
    requires(Store& s, const store_key_t<Store>& k, const store_token_t<Store>& t,
             const store_value_t<Store>& v) {
  { store_traits<Store>::write_if_match(s, k, t, v) } -> std::same_as<store_write_result_t<Store>>;
  { store_traits<Store>::create_if_absent(s, k, v) } -> std::same_as<store_write_result_t<Store>>;
};

/// Optional: erase only if unchanged.
template <class Store>
concept erasable_writer = conditional_writer<Store> &&
    requires(Store& s, const store_key_t<Store>& k, const store_token_t<Store>& t) {
  { store_traits<Store>::erase_if_match(s, k, t) } -> std::same_as<store_write_result_t<Store>>;
};

/// Optional: apply a sparse patch only if unchanged (the cache refresh that overwrites an edit
/// writes only its own fields this way: patch_if_unchanged.hpp).
template <class Store>
concept patchable_writer = conditional_writer<Store> && requires {
  typename store_patch_t<Store>;
} && requires(Store& s, const store_key_t<Store>& k, const store_token_t<Store>& t,
              const store_patch_t<Store>& p) {
  { store_traits<Store>::patch_if_match(s, k, t, p) } -> std::same_as<store_write_result_t<Store>>;
};

/// Optional: an unconditional write (create or replace). Exists so that the naive blind
/// read-modify-write — the bug this library prevents — can be run as a negative control.
template <class Store>
concept overwritable_store = store_types<Store> &&
    requires(Store& s, const store_key_t<Store>& k, const store_value_t<Store>& v) {
  { store_traits<Store>::overwrite(s, k, v) } -> std::same_as<store_write_result_t<Store>>;
};

namespace detail {
// A store_traits function declared without `static` (in a user's specialisation): taking its
// address gives a pointer to member function. Templates and overload sets are never flagged.
template <class T>
concept nonstatic_read = std::is_member_function_pointer_v<decltype(&T::read)>;
template <class T>
concept nonstatic_write_if_match = std::is_member_function_pointer_v<decltype(&T::write_if_match)>;
template <class T>
concept nonstatic_create_if_absent = std::is_member_function_pointer_v<decltype(&T::create_if_absent)>;
template <class T>
concept nonstatic_erase_if_match = std::is_member_function_pointer_v<decltype(&T::erase_if_match)>;
template <class T>
concept nonstatic_patch_if_match = std::is_member_function_pointer_v<decltype(&T::patch_if_match)>;
template <class T>
concept nonstatic_overwrite = std::is_member_function_pointer_v<decltype(&T::overwrite)>;

#define NOCLOBBER_TRAITS_STATIC_MESSAGE_(fn)               \
  "noclobber: store_traits<Store>::" fn                    \
  " is declared without `static`: declare it static (the " \
  "algorithms call store_traits<Store>::" fn "(store, ...) without a traits object)"

template <class S>
constexpr bool check_traits_static() {
  using T = store_traits<S>;
  static_assert(!nonstatic_read<T>, NOCLOBBER_TRAITS_STATIC_MESSAGE_("read"));
  static_assert(!nonstatic_write_if_match<T>, NOCLOBBER_TRAITS_STATIC_MESSAGE_("write_if_match"));
  static_assert(!nonstatic_create_if_absent<T>, NOCLOBBER_TRAITS_STATIC_MESSAGE_("create_if_absent"));
  static_assert(!nonstatic_erase_if_match<T>, NOCLOBBER_TRAITS_STATIC_MESSAGE_("erase_if_match"));
  static_assert(!nonstatic_patch_if_match<T>, NOCLOBBER_TRAITS_STATIC_MESSAGE_("patch_if_match"));
  static_assert(!nonstatic_overwrite<T>, NOCLOBBER_TRAITS_STATIC_MESSAGE_("overwrite"));
  return true;
}
#undef NOCLOBBER_TRAITS_STATIC_MESSAGE_
}  // namespace detail

/// Names, in plain words, the first thing a would-be adapter lacks. Use it at the top of an
/// algorithm (or in your adapter's test) for a readable error instead of a concept dump: a
/// missing type name is reported alone (each one is detected on its own), and a store_traits
/// function declared without `static` is reported as that.
template <class Store>
constexpr bool check_conditional_writer() {
  using S = std::remove_cvref_t<Store>;
  constexpr bool has_key = requires {
    typename store_key_t<S>;
  };
  constexpr bool has_value = requires {
    typename store_value_t<S>;
  };
  constexpr bool has_token = requires {
    typename store_token_t<S>;
  };
  static_assert(has_key,
                "noclobber: the store adapter must name its key type: a member `using key_type = ...;` "
                "or store_traits<Store>::key_type");
  static_assert(has_value,
                "noclobber: the store adapter must name its value type: a member `using value_type = ...;` "
                "or store_traits<Store>::value_type");
  static_assert(has_token,
                "noclobber: the store adapter must name its version token type: a member "
                "`using token_type = ...;` or store_traits<Store>::token_type");
  static_assert(detail::check_traits_static<S>());
  if constexpr (has_key && has_value && has_token) {
    static_assert(
        std::default_initializable<store_value_t<S>> && std::default_initializable<store_token_t<S>>,
        "noclobber: value_type and token_type must be default-constructible");
    static_assert(std::equality_comparable<store_token_t<S>>,
                  "noclobber: token_type must be equality-comparable");
  }
  if constexpr (store_types<S> && !detail::nonstatic_read<store_traits<S>> &&
                !detail::nonstatic_write_if_match<store_traits<S>> &&
                !detail::nonstatic_create_if_absent<store_traits<S>>) {
    static_assert(readable_store<S>,
                  "noclobber: the store adapter must provide `read(const key_type&)` returning "
                  "read_result<value_type, token_type> (absent is a normal answer)");
    static_assert(
        requires(S & s, const store_key_t<S>& k, const store_token_t<S>& t, const store_value_t<S>& v) {
          { store_traits<S>::write_if_match(s, k, t, v) } -> std::same_as<store_write_result_t<S>>;
        },
        "noclobber: the store adapter must provide `write_if_match(const key_type&, const token_type&, "
        "const value_type&)` returning write_result<token_type>");
    static_assert(
        requires(S & s, const store_key_t<S>& k, const store_value_t<S>& v) {
          { store_traits<S>::create_if_absent(s, k, v) } -> std::same_as<store_write_result_t<S>>;
        },
        "noclobber: the store adapter must provide `create_if_absent(const key_type&, const value_type&)` "
        "returning write_result<token_type>");
  }
  return true;
}

}  // namespace noclobber
