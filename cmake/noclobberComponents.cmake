# noclobber's optional components: one per adapter family (and the Boost.Asio forms), each an
# INTERFACE target `noclobber::<component>` = noclobber::noclobber + the client library its
# headers include. This table is the one place that says which library a component carries: the
# build tree (cmake/NoclobberTargets.cmake), the installed config (noclobberConfig.cmake) and
# scripts/check_packaging.py (against conanfile.py and ports/noclobber/vcpkg.json) all read it.
# Installed next to noclobberConfig.cmake. Read it with include() (no include guard: its variables
# are directory-scoped, and every directory that finds noclobber needs them).
#
#   noclobber_component_headers_<c>  headers under include/noclobber/ the component covers; the
#                                    component exists only where the first one does (the s3 row
#                                    waits for noclobber/adapters/s3.hpp)
#   noclobber_component_find_<c>     find_package() arguments for its library
#   noclobber_component_target_<c>   the imported target that find_package() defines
#   noclobber_component_debian_<c>   the Debian package that provides it (for messages)
#   noclobber_component_uses_<c>     other components whose library it carries too (listed before
#                                    it in noclobber_known_components): etcd decodes its gateway's
#                                    JSON with nlohmann/json, so noclobber::etcd links noclobber::json
set(noclobber_known_components json sqlite postgres redis etcd http s3 asio benchmark fmt)

# nlohmann/json: the JSON codec for typed records, the strict member reads and the Porcupine
# import (noclobber/json/), and the etcd adapter's gateway JSON.
set(noclobber_component_headers_json json/codec.hpp json/members.hpp json/porcupine.hpp)
set(noclobber_component_find_json nlohmann_json 3.11)
set(noclobber_component_target_json nlohmann_json::nlohmann_json)
set(noclobber_component_debian_json nlohmann-json3-dev)

set(noclobber_component_headers_sqlite adapters/sqlite.hpp adapters/sqlite/table_store.hpp)
set(noclobber_component_find_sqlite SQLite3)
set(noclobber_component_target_sqlite SQLite::SQLite3)
set(noclobber_component_debian_sqlite libsqlite3-dev)

set(noclobber_component_headers_postgres adapters/postgres.hpp adapters/postgres/table_store.hpp
                                         adapters/postgres_lease.hpp)
set(noclobber_component_find_postgres PostgreSQL)
set(noclobber_component_target_postgres PostgreSQL::PostgreSQL)
set(noclobber_component_debian_postgres libpq-dev)

# hiredis: its own CMake config where it has one (vcpkg, Conan, hiredis >= 1.0), else pkg-config
# or a plain search (Debian's hiredis 0.14 ships neither a target nor a usable config): the
# module FindNoclobberHiredis.cmake beside this file defines hiredis::hiredis either way.
set(noclobber_component_headers_redis adapters/redis.hpp adapters/redis/hash_store.hpp adapters/redis_lease.hpp)
set(noclobber_component_find_redis NoclobberHiredis)
set(noclobber_component_target_redis hiredis::hiredis)
set(noclobber_component_debian_redis libhiredis-dev)

set(noclobber_component_headers_etcd adapters/etcd.hpp adapters/etcd_lease.hpp)
set(noclobber_component_find_etcd CURL)
set(noclobber_component_target_etcd CURL::libcurl)
set(noclobber_component_debian_etcd libcurl4-openssl-dev)
set(noclobber_component_uses_etcd json)

set(noclobber_component_headers_http adapters/http_etag.hpp adapters/webdav_lock.hpp)
set(noclobber_component_find_http CURL)
set(noclobber_component_target_http CURL::libcurl)
set(noclobber_component_debian_http libcurl4-openssl-dev)

set(noclobber_component_headers_s3 adapters/s3.hpp)
set(noclobber_component_find_s3 CURL)
set(noclobber_component_target_s3 CURL::libcurl)
set(noclobber_component_debian_s3 libcurl4-openssl-dev)

set(noclobber_component_headers_asio asio/async_read_modify_write.hpp asio/async_cas_retry.hpp
                                     asio/async_store.hpp asio/keyed_async_mutex.hpp)
set(noclobber_component_find_asio Boost 1.81)
set(noclobber_component_target_asio Boost::headers)
set(noclobber_component_debian_asio libboost1.81-dev)

# Not an adapter: the Google Benchmark fixture a user runs on their own store.
set(noclobber_component_headers_benchmark benchmark/store_bench.hpp)
set(noclobber_component_find_benchmark benchmark)
set(noclobber_component_target_benchmark benchmark::benchmark)
set(noclobber_component_debian_benchmark libbenchmark-dev)

# Not an adapter: {fmt} formatters for the outcome and result types (the text of ostream.hpp).
set(noclobber_component_headers_fmt fmt/ostream.hpp)
set(noclobber_component_find_fmt fmt 9)
set(noclobber_component_target_fmt fmt::fmt)
set(noclobber_component_debian_fmt libfmt-dev)

# noclobber_find_component_library(<component> <QUIET|DEPENDENCY>): find the component's library.
# DEPENDENCY goes through find_dependency() (for the installed config: a required component whose
# library is missing makes find_package(noclobber) fail, naming the library, and returns from
# the file that called this macro). Sets noclobber_component_library_found.
macro(noclobber_find_component_library _nc_comp _nc_how)
  set(_nc_saved_module_path "${CMAKE_MODULE_PATH}")
  list(PREPEND CMAKE_MODULE_PATH "${noclobber_components_dir}") # FindNoclobberHiredis.cmake
  if("${_nc_how}" STREQUAL "DEPENDENCY")
    # On failure find_dependency() returns from the config file at once (leaving this folder on
    # CMAKE_MODULE_PATH; find_package(noclobber) has failed by then).
    include(CMakeFindDependencyMacro)
    find_dependency(${noclobber_component_find_${_nc_comp}})
  else()
    find_package(${noclobber_component_find_${_nc_comp}} QUIET)
  endif()
  set(CMAKE_MODULE_PATH "${_nc_saved_module_path}")
  if(TARGET ${noclobber_component_target_${_nc_comp}})
    set(noclobber_component_library_found TRUE)
  else()
    set(noclobber_component_library_found FALSE)
  endif()
endmacro()
set(noclobber_components_dir "${CMAKE_CURRENT_LIST_DIR}")
