# Optional targets: one per family of optional headers, each linking the library those headers
# need, each defined only when that library is found here. Link the one whose headers you include;
# noclobber::noclobber itself never pulls any of them.
#
#   noclobber::json      noclobber/json/*.hpp                           nlohmann_json 3.11 (header-only)
#   noclobber::sqlite    noclobber/adapters/sqlite.hpp, adapters/sqlite/  SQLite::SQLite3
#   noclobber::postgres  noclobber/adapters/postgres.hpp, adapters/postgres/  PostgreSQL::PostgreSQL (libpq)
#   noclobber::redis     noclobber/adapters/redis.hpp, adapters/redis/  hiredis (pkg-config)
#
# Installed, each goes into its own export file, which noclobberConfig.cmake loads only when it
# finds the library again (see noclobberConfig.cmake.in).
include_guard(GLOBAL)

set(NOCLOBBER_OPTIONAL_TARGETS "")

# nc_optional_target(NAME LIB...): noclobber_NAME (exported as noclobber::NAME) = noclobber + LIB.
function(nc_optional_target name)
  add_library(noclobber_${name} INTERFACE)
  add_library(noclobber::${name} ALIAS noclobber_${name})
  set_target_properties(noclobber_${name} PROPERTIES EXPORT_NAME ${name})
  target_link_libraries(noclobber_${name} INTERFACE noclobber ${ARGN})
  set(NOCLOBBER_OPTIONAL_TARGETS ${NOCLOBBER_OPTIONAL_TARGETS} ${name} PARENT_SCOPE)
endfunction()

find_package(nlohmann_json 3.11 QUIET CONFIG)
if(TARGET nlohmann_json::nlohmann_json)
  nc_optional_target(json nlohmann_json::nlohmann_json)
endif()
find_package(SQLite3 QUIET)
if(TARGET SQLite::SQLite3)
  nc_optional_target(sqlite SQLite::SQLite3)
endif()
find_package(PostgreSQL QUIET)
if(TARGET PostgreSQL::PostgreSQL)
  nc_optional_target(postgres PostgreSQL::PostgreSQL)
endif()
find_package(PkgConfig QUIET)
if(PkgConfig_FOUND)
  pkg_check_modules(hiredis QUIET IMPORTED_TARGET hiredis)
  if(TARGET PkgConfig::hiredis)
    nc_optional_target(redis PkgConfig::hiredis)
  endif()
endif()

if(NOCLOBBER_INSTALL)
  foreach(name ${NOCLOBBER_OPTIONAL_TARGETS})
    install(TARGETS noclobber_${name} EXPORT noclobber_${name}_targets)
    install(EXPORT noclobber_${name}_targets NAMESPACE noclobber:: FILE noclobber-${name}-targets.cmake
            DESTINATION "${NOCLOBBER_INSTALL_CMAKEDIR}")
  endforeach()
endif()
