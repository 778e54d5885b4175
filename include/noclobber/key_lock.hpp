// noclobber/key_lock.hpp — what "a per-key lock" means to noclobber: the key_lock_map concept.
//
// Overview
// --------
// Functions that serialise writers of one key inside a process (locked_read_modify_write) take
// the lock map as a template parameter and need only this: `locks.lock(key)` returns an RAII
// guard that holds `key` until it is destroyed.
//
//   static_assert(noclobber::key_lock_map<noclobber::keyed_mutex_map<std::string>, std::string>);
//
// keyed_mutex_map (noclobber/keyed_mutex_map.hpp) satisfies it, as does any map of your own with
// such a `lock`. The key must be one the map can lock: its own key type, or one it looks up
// transparently (keyed_mutex_map<std::string, string_hash, std::equal_to<>> also takes a
// std::string_view). detail::check_key_lock_map names both types when it does not fit.
//
// Thread safety: a concept only; what `lock` promises is the map's business.
#pragma once

namespace noclobber {

/// Something that hands out a per-key RAII lock: `locks.lock(key)`.
template <class Locks, class Key>
concept key_lock_map = requires(Locks& locks, const Key& key) {
  locks.lock(key);
};

namespace detail {

/// One static_assert, instantiated with both types (compilers print them in the note that
/// points here), for a lock map that cannot lock the keys it is given. True when it fits.
template <class Locks, class Key>
struct check_key_lock_map {
  static_assert(key_lock_map<Locks, Key>,
                "noclobber: the lock map cannot lock this key type: `locks.lock(key)` must accept the "
                "store's key (store_key_t<Store>). Give the lock map the store's key type, or a "
                "transparent Hash and KeyEqual that look that key type up. The two types are "
                "named in this check_key_lock_map<Locks, Key>.");
  static constexpr bool value = key_lock_map<Locks, Key>;
};

}  // namespace detail
}  // namespace noclobber
