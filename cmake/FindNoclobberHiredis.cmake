# FindNoclobberHiredis: hiredis as the imported target hiredis::hiredis, whichever way it is
# installed. Used by noclobber::redis (cmake/noclobberComponents.cmake); installed with it.
#
#   1. hiredis's own CMake package (hiredis >= 1.0, vcpkg, Conan): it defines hiredis::hiredis
#   2. pkg-config's hiredis.pc (Debian's libhiredis-dev 0.14: its HiredisConfig.cmake sets
#      variables only)
#   3. a plain search for hiredis/hiredis.h and libhiredis
#
# Sets NoclobberHiredis_FOUND.
if(NOT TARGET hiredis::hiredis)
  find_package(hiredis CONFIG QUIET)
endif()
if(NOT TARGET hiredis::hiredis)
  find_package(PkgConfig QUIET)
  if(PkgConfig_FOUND)
    pkg_check_modules(noclobber_hiredis_pc QUIET IMPORTED_TARGET hiredis)
  endif()
  if(TARGET PkgConfig::noclobber_hiredis_pc)
    add_library(hiredis::hiredis INTERFACE IMPORTED)
    set_target_properties(hiredis::hiredis PROPERTIES INTERFACE_LINK_LIBRARIES PkgConfig::noclobber_hiredis_pc)
  else()
    find_path(NOCLOBBER_HIREDIS_INCLUDE_DIR hiredis/hiredis.h)
    find_library(NOCLOBBER_HIREDIS_LIBRARY NAMES hiredis)
    if(NOCLOBBER_HIREDIS_INCLUDE_DIR AND NOCLOBBER_HIREDIS_LIBRARY)
      add_library(hiredis::hiredis UNKNOWN IMPORTED)
      set_target_properties(hiredis::hiredis PROPERTIES IMPORTED_LOCATION "${NOCLOBBER_HIREDIS_LIBRARY}"
                                                        INTERFACE_INCLUDE_DIRECTORIES "${NOCLOBBER_HIREDIS_INCLUDE_DIR}")
    endif()
  endif()
endif()
if(TARGET hiredis::hiredis)
  set(_nc_hiredis_target hiredis::hiredis)
endif()
include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(NoclobberHiredis REQUIRED_VARS _nc_hiredis_target
                                  REASON_FAILURE_MESSAGE "hiredis not found (no hiredis CMake package, no hiredis.pc, no hiredis/hiredis.h and libhiredis: on Debian install libhiredis-dev)")
unset(_nc_hiredis_target)
